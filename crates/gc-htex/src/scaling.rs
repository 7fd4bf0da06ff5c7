//! The scaling decision, separate from the I/O so it can be tested alone.

use std::time::Duration;

use gc_provider::BlockLimits;

use crate::config::Strategy;

/// What the scaler sees at one decision.
#[derive(Debug, Clone)]
pub(crate) struct ScaleInput {
    /// Tasks queued or running.
    pub active_tasks: usize,
    /// Blocks submitted and not ended nor being cancelled.
    pub active_blocks: usize,
    /// Of those, the ones whose managers have had nothing to do, with for how long.
    pub idle_blocks: Vec<(String, Duration)>,
    /// Worker slots in one block (`workers_per_node × nodes_per_block`).
    pub slots_per_block: usize,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Submit this many blocks.
    Out(usize),
    /// Cancel these (idle) blocks.
    In(Vec<String>),
    /// Nothing.
    Hold,
}

/// Decide: scale out when the backlog needs more slots (aiming at
/// `active_tasks × parallelism` slots, at least one block while tasks wait), never above
/// `max_blocks`; scale in blocks idle for `max_idletime`, never below `min_blocks` — with
/// `Simple` only when no task is active, with `HtexAutoScale` also while others work.
pub(crate) fn decide(
    input: &ScaleInput,
    limits: &BlockLimits,
    strategy: Strategy,
    max_idletime: Duration,
) -> Decision {
    if strategy == Strategy::None {
        return Decision::Hold;
    }
    let slots = input.slots_per_block.max(1);
    let wanted_by_tasks = if input.active_tasks == 0 {
        0
    } else {
        let needed = (input.active_tasks as f64 * limits.parallelism).ceil() as usize;
        needed.div_ceil(slots).max(1)
    };
    let wanted = wanted_by_tasks.clamp(limits.min_blocks, limits.max_blocks.max(limits.min_blocks));
    if wanted > input.active_blocks {
        return Decision::Out(wanted - input.active_blocks);
    }
    if input.active_tasks > 0 && strategy == Strategy::Simple {
        return Decision::Hold;
    }
    let floor = wanted.max(limits.min_blocks);
    let mut removable = input.active_blocks.saturating_sub(floor);
    let mut victims = Vec::new();
    for (id, idle) in &input.idle_blocks {
        if removable == 0 {
            break;
        }
        if *idle >= max_idletime {
            victims.push(id.clone());
            removable -= 1;
        }
    }
    if victims.is_empty() {
        Decision::Hold
    } else {
        Decision::In(victims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(min: usize, max: usize, parallelism: f64) -> BlockLimits {
        BlockLimits {
            init_blocks: 1,
            min_blocks: min,
            max_blocks: max,
            parallelism,
            nodes_per_block: 1,
        }
    }

    fn input(tasks: usize, blocks: usize, idle: &[(&str, u64)]) -> ScaleInput {
        ScaleInput {
            active_tasks: tasks,
            active_blocks: blocks,
            idle_blocks: idle
                .iter()
                .map(|(id, s)| (id.to_string(), Duration::from_secs(*s)))
                .collect(),
            slots_per_block: 2,
        }
    }

    const IDLE: Duration = Duration::from_secs(10);

    #[test]
    fn scales_out_on_backlog_up_to_max_blocks() {
        let l = limits(0, 3, 1.0);
        assert_eq!(
            decide(&input(5, 1, &[]), &l, Strategy::Simple, IDLE),
            Decision::Out(2)
        );
        assert_eq!(
            decide(&input(100, 1, &[]), &l, Strategy::Simple, IDLE),
            Decision::Out(2)
        );
        assert_eq!(
            decide(&input(100, 3, &[]), &l, Strategy::Simple, IDLE),
            Decision::Hold
        );
        assert_eq!(
            decide(&input(1, 0, &[]), &l, Strategy::Simple, IDLE),
            Decision::Out(1)
        );
    }

    #[test]
    fn parallelism_zero_still_gives_one_block() {
        let l = limits(0, 4, 0.0);
        assert_eq!(
            decide(&input(50, 0, &[]), &l, Strategy::Simple, IDLE),
            Decision::Out(1)
        );
        assert_eq!(
            decide(&input(50, 1, &[]), &l, Strategy::Simple, IDLE),
            Decision::Hold
        );
    }

    #[test]
    fn scales_in_idle_blocks_after_max_idletime_down_to_min_blocks() {
        let l = limits(1, 3, 1.0);
        let i = input(0, 3, &[("0", 20), ("1", 5), ("2", 30)]);
        assert_eq!(
            decide(&i, &l, Strategy::Simple, IDLE),
            Decision::In(vec!["0".into(), "2".into()])
        );
        let i = input(0, 1, &[("0", 99)]);
        assert_eq!(decide(&i, &l, Strategy::Simple, IDLE), Decision::Hold);
        let l0 = limits(0, 3, 1.0);
        assert_eq!(
            decide(&i, &l0, Strategy::Simple, IDLE),
            Decision::In(vec!["0".into()])
        );
    }

    #[test]
    fn simple_keeps_blocks_while_tasks_run_auto_scale_does_not() {
        let l = limits(0, 3, 1.0);
        let i = input(1, 2, &[("1", 99)]);
        assert_eq!(decide(&i, &l, Strategy::Simple, IDLE), Decision::Hold);
        assert_eq!(
            decide(&i, &l, Strategy::HtexAutoScale, IDLE),
            Decision::In(vec!["1".into()])
        );
    }

    #[test]
    fn min_blocks_are_kept_and_none_never_moves() {
        let l = limits(2, 3, 1.0);
        assert_eq!(
            decide(&input(0, 0, &[]), &l, Strategy::Simple, IDLE),
            Decision::Out(2)
        );
        assert_eq!(
            decide(&input(9, 0, &[]), &l, Strategy::None, IDLE),
            Decision::Hold
        );
    }
}
