//! Job scripts as each provider writes them, whole.

use gc_provider::Provider;

fn provider(yaml: &str, dir: &std::path::Path) -> Provider {
    let text = format!("engine:\n  type: GlobusComputeEngine\n  provider:\n{yaml}");
    let cfg = gc_config::UserEndpointConfig::from_yaml(&text, "config.yaml").expect("config");
    Provider::from_config(cfg.engine.provider.as_ref(), dir).expect("provider")
}

#[test]
fn slurm_script() {
    let dir = std::path::Path::new("/uep/submit_scripts");
    let p = provider(
        "    type: SlurmProvider\n    partition: debug\n    account: proj1\n    qos: normal\n    \
         nodes_per_block: 2\n    cores_per_node: 8\n    mem_per_node: 16\n    walltime: \"01:30:00\"\n    \
         scheduler_options: \"#SBATCH --mail-type=NONE\"\n    \
         worker_init: \"module load python\\nsource ~/venv/bin/activate\"\n    \
         launcher:\n      type: SrunLauncher\n      debug: false\n",
        dir,
    );
    assert_eq!(
        p.script("gc-worker-manager --block-id=3", 1, "gc.GCE.block-3.100"),
        "#!/bin/bash\n\n\
         #SBATCH --job-name=gc.GCE.block-3.100\n\
         #SBATCH --output=/uep/submit_scripts/gc.GCE.block-3.100.submit.stdout\n\
         #SBATCH --error=/uep/submit_scripts/gc.GCE.block-3.100.submit.stderr\n\
         #SBATCH --nodes=2\n\
         #SBATCH --time=90\n\
         #SBATCH --ntasks-per-node=1\n\
         #SBATCH --mail-type=NONE\n\
         #SBATCH --exclusive\n\
         #SBATCH --partition=debug\n\
         #SBATCH --account=proj1\n\
         #SBATCH --qos=normal\n\
         #SBATCH --mem=16g\n\
         #SBATCH --cpus-per-task=8\n\
         \n\
         module load python\n\
         source ~/venv/bin/activate\n\
         \n\
         export JOBNAME=\"gc.GCE.block-3.100\"\n\
         \n\
         srun --ntasks=2 --ntasks-per-node=1 /bin/bash -c 'gc-worker-manager --block-id=3'\n"
    );
    assert_eq!(p.limits().nodes_per_block, 2);
    assert_eq!(p.cores_per_node(), Some(8));
}

#[test]
fn slurm_not_exclusive_and_defaults() {
    let p = provider(
        "    type: SlurmProvider\n    exclusive: false\n    launcher:\n      type: SimpleLauncher\n      debug: false\n",
        std::path::Path::new("/s"),
    );
    let s = p.script("m", 1, "j");
    assert!(!s.contains("--exclusive"));
    assert!(s.contains("#SBATCH --time=10\n"));
    assert!(s.ends_with("\nexport JOBNAME=\"j\"\n\nm\n"), "{s}");
}

#[test]
fn pbspro_script() {
    let p = provider(
        "    type: PBSProProvider\n    account: proj1\n    queue: debug\n    cpus_per_node: 64\n    \
         select_options: \"ngpus=4\"\n    scheduler_options: \"#PBS -l filesystems=home\"\n    \
         worker_init: \"module load conda\"\n    launcher:\n      type: SimpleLauncher\n      debug: false\n",
        std::path::Path::new("/uep/submit_scripts"),
    );
    assert_eq!(
        p.script("gc-worker-manager", 1, "gc.b-0"),
        "#!/bin/bash\n\n\
         #PBS -S /bin/bash\n\
         #PBS -N gc.b-0\n\
         #PBS -m n\n\
         #PBS -l walltime=00:20:00\n\
         #PBS -l select=1:ncpus=64:ngpus=4\n\
         #PBS -o /uep/submit_scripts/gc.b-0.submit.stdout\n\
         #PBS -e /uep/submit_scripts/gc.b-0.submit.stderr\n\
         #PBS -q debug\n\
         #PBS -l filesystems=home\n\
         \n\
         module load conda\n\
         \n\
         export JOBNAME=\"gc.b-0\"\n\
         \n\
         gc-worker-manager\n"
    );
}

#[test]
fn unsupported_providers_and_bad_options_are_errors() {
    let text = "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: CondorProvider\n";
    let cfg = gc_config::UserEndpointConfig::from_yaml(text, "c").unwrap();
    let e = Provider::from_config(cfg.engine.provider.as_ref(), "/s".as_ref()).unwrap_err();
    assert!(
        e.to_string().starts_with("CondorProvider is not supported"),
        "{e}"
    );
    let text = "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: LocalProvider\n    min_blocks: 3\n    max_blocks: 1\n";
    let cfg = gc_config::UserEndpointConfig::from_yaml(text, "c").unwrap();
    let e = Provider::from_config(cfg.engine.provider.as_ref(), "/s".as_ref()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "min_blocks (3) must not exceed max_blocks (1)"
    );
}

#[test]
fn no_provider_means_local() {
    let p = Provider::from_config(None, "/s".as_ref()).unwrap();
    assert_eq!(p.name(), "LocalProvider");
    assert_eq!(p.limits().init_blocks, 1);
    assert_eq!(p.limits().max_blocks, 1);
    assert_eq!(p.launcher().name(), "SingleNodeLauncher");
}
