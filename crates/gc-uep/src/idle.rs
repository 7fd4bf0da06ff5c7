//! Idle shutdown (PROTOCOL-ENDPOINT §6.3, ENDPOINT.md §5.3): a pure state machine fed once per
//! heartbeat tick with the running totals of tasks received and results forwarded.

/// What a tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleVerdict {
    /// Keep running.
    Continue,
    /// `idle_heartbeats_soft` reached after work was done.
    SoftLimit,
    /// `idle_heartbeats_hard` exceeded.
    HardLimit,
}

/// The idle counters of one UEP.
#[derive(Debug, Clone)]
pub struct IdleTracker {
    soft: u64,
    hard: u64,
    last_tasks: u64,
    last_results: u64,
    soft_count: u64,
    hard_count: u64,
}

impl IdleTracker {
    /// `soft` = `max(0, idle_heartbeats_soft)`; `hard` = `max(soft + 1, idle_heartbeats_hard)`.
    /// A `soft` of 0 disables idle shutdown entirely, the hard limit included.
    #[must_use]
    pub fn new(soft: u64, hard: u64) -> Self {
        IdleTracker {
            soft,
            hard: hard.max(soft.saturating_add(1)),
            last_tasks: 0,
            last_results: 0,
            soft_count: 0,
            hard_count: 0,
        }
    }

    /// One heartbeat tick, with the totals so far (`tasks` received, `results` forwarded).
    pub fn tick(&mut self, tasks: u64, results: u64, period: f64) -> IdleVerdict {
        let moved = tasks != self.last_tasks || results != self.last_results;
        self.last_tasks = tasks;
        self.last_results = results;
        if self.soft == 0 {
            return IdleVerdict::Continue;
        }
        if moved {
            if self.soft_count > 0 || self.hard_count > 0 {
                tracing::info!(
                    "Moved to active state (due to tasks processed since last heartbeat)."
                );
            }
            self.soft_count = 0;
            self.hard_count = 0;
            return IdleVerdict::Continue;
        }
        self.hard_count += 1;
        if (tasks > 0 || results > 0) && results >= tasks {
            self.soft_count += 1;
            if self.soft_count == 1 {
                let left = self.soft.saturating_sub(self.soft_count) as f64 * period;
                tracing::info!(
                    "In idle state (no task or result movement); shut down in {left:?}s.  (idle_heartbeats_soft)"
                );
            }
            if self.soft_count >= self.soft {
                tracing::info!("Idle heartbeats reached.  Shutting down.");
                return IdleVerdict::SoftLimit;
            }
        } else if self.hard_count > self.hard {
            tracing::warn!("Shutting down due to idle heartbeats HARD limit.");
            return IdleVerdict::HardLimit;
        } else if self.hard_count == self.soft + 1 {
            let left = self.hard.saturating_sub(self.hard_count) as f64 * period;
            tracing::info!(
                "Possibly idle -- no task or result movement.  Shutting down in {left:?}s.  (idle_heartbeats_hard)"
            );
        }
        IdleVerdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_counts_only_after_work_and_resets_on_movement() {
        let mut t = IdleTracker::new(3, 10);
        // Work arrives, result forwarded in the same period.
        assert_eq!(t.tick(1, 1, 5.0), IdleVerdict::Continue);
        assert_eq!(t.tick(1, 1, 5.0), IdleVerdict::Continue);
        assert_eq!(t.tick(1, 1, 5.0), IdleVerdict::Continue);
        // Movement resets the count.
        assert_eq!(t.tick(2, 2, 5.0), IdleVerdict::Continue);
        assert_eq!(t.tick(2, 2, 5.0), IdleVerdict::Continue);
        assert_eq!(t.tick(2, 2, 5.0), IdleVerdict::Continue);
        assert_eq!(t.tick(2, 2, 5.0), IdleVerdict::SoftLimit);
    }

    #[test]
    fn outstanding_tasks_block_the_soft_limit_but_not_the_hard_one() {
        // hard = max(soft + 1, 2) = 3
        let mut t = IdleTracker::new(2, 2);
        assert_eq!(t.tick(1, 0, 5.0), IdleVerdict::Continue);
        for _ in 0..3 {
            assert_eq!(t.tick(1, 0, 5.0), IdleVerdict::Continue);
        }
        assert_eq!(t.tick(1, 0, 5.0), IdleVerdict::HardLimit);
    }

    #[test]
    fn never_used_endpoint_is_subject_to_the_hard_limit_only() {
        let mut t = IdleTracker::new(1, 4);
        for _ in 0..4 {
            assert_eq!(t.tick(0, 0, 5.0), IdleVerdict::Continue);
        }
        assert_eq!(t.tick(0, 0, 5.0), IdleVerdict::HardLimit);
    }

    #[test]
    fn zero_soft_disables_everything() {
        let mut t = IdleTracker::new(0, 1);
        for _ in 0..100 {
            assert_eq!(t.tick(0, 0, 5.0), IdleVerdict::Continue);
        }
    }
}
