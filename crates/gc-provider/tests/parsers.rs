//! Scheduler output parsing against saved outputs (`tests/recorded/`).
//!
//! `sbatch.txt` and `squeue.txt` were captured from Slurm 22.05 (Debian 12's `slurm-wlm`,
//! started by `scripts/slurm.sh`, whose accounting is off); `sacct.txt` follows the layout of
//! `sacct --parsable2`, written by hand for the same reason. PBS Pro is not packaged for Debian: its files follow the layout PBS
//! Pro documents for `qsub` and `qstat -x -f -F json` (including its unescaped backslashes in
//! `Variable_List`), written by hand, not captured.

use gc_provider::parse::{
    parse_qstat_json, parse_qsub, parse_sacct, parse_sbatch, parse_squeue, qstat_statuses,
};
use gc_provider::{JobId, JobState};

fn recorded(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/recorded")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(list: &[&str]) -> Vec<JobId> {
    list.iter().map(|s| JobId((*s).to_string())).collect()
}

#[test]
fn sbatch_job_id() {
    let re = regex::Regex::new(r"Submitted batch job (?P<id>\S*)").unwrap();
    assert_eq!(
        parse_sbatch(&re, &recorded("sbatch.txt")),
        Some(JobId("1".into()))
    );
    assert_eq!(
        parse_sbatch(&re, "Submitted batch job 7 on cluster c1\n"),
        Some(JobId("7".into()))
    );
    assert_eq!(
        parse_sbatch(&re, "sbatch: error: Batch job submission failed\n"),
        None
    );
}

#[test]
fn squeue_states_and_forgotten_jobs() {
    let got = parse_squeue(&recorded("squeue.txt"), &ids(&["2", "3", "99"]));
    let states: Vec<JobState> = got.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [JobState::Running, JobState::Pending, JobState::Completed]
    );
    assert_eq!(
        got[2].message.as_deref(),
        Some("no longer listed by squeue")
    );
}

#[test]
fn sacct_states_with_reasons() {
    let got = parse_sacct(
        &recorded("sacct.txt"),
        &ids(&["11", "12", "13", "14", "15"]),
    );
    let states: Vec<JobState> = got.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            JobState::Completed,
            JobState::Cancelled,
            JobState::Failed,
            JobState::Timeout,
            JobState::Running
        ]
    );
    assert_eq!(got[1].message.as_deref(), Some("CANCELLED by 0"));
}

#[test]
fn qsub_job_id() {
    assert_eq!(
        parse_qsub(&recorded("qsub.txt")),
        Some(JobId("106.pbs01".into()))
    );
    assert_eq!(parse_qsub("\n"), None);
}

#[test]
fn qstat_json_states() {
    let out = recorded("qstat_x_f_F_json.txt");
    let got = parse_qstat_json(
        &out,
        &ids(&[
            "101.pbs01",
            "102.pbs01",
            "103.pbs01",
            "104.pbs01",
            "105.pbs01",
            "107.pbs01",
            "101",
        ]),
    )
    .unwrap();
    let states: Vec<JobState> = got.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            JobState::Running,
            JobState::Pending,
            JobState::Completed,
            JobState::Failed,
            JobState::Held,
            JobState::Completed,
            JobState::Running,
        ]
    );
    assert_eq!(got[3].message.as_deref(), Some("Exit_status=271"));
    assert!(parse_qstat_json("qstat: Unknown Job Id", &ids(&["1"])).is_err());
}

#[test]
fn qstat_without_job_history_is_an_answer() {
    let known = recorded("qstat_x_f_F_json.txt");
    let unknown = "qstat: Unknown Job Id 999.pbs01\n";
    let got = qstat_statuses(false, &known, unknown, &ids(&["101.pbs01", "999.pbs01"]))
        .expect("an answer")
        .unwrap();
    assert_eq!(got[0].state, JobState::Running);
    assert_eq!(got[1].state, JobState::Completed);
    let got = qstat_statuses(false, "", unknown, &ids(&["999.pbs01"]))
        .expect("an answer")
        .unwrap();
    assert_eq!(got[0].state, JobState::Completed);
    assert!(
        qstat_statuses(
            false,
            "",
            "qstat: cannot connect to server pbs01 (errno=15010)\n",
            &ids(&["1"])
        )
        .is_none()
    );
}
