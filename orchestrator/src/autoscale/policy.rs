//! The desired-workers policy. No I/O, no clock: callers pass the time.

/// Limits and pace of scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Never fewer workers than this, even when idle.
    pub min: u32,
    /// Never more workers than this, whatever the backlog.
    pub max: u32,
    /// Attempts one worker runs at once, when no live worker reports its own.
    pub slots_per_worker: u32,
    /// How long demand must stay lower before the fleet shrinks.
    pub cooldown_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min: 0,
            max: 100,
            slots_per_worker: 200,
            cooldown_ms: 60_000,
        }
    }
}

/// One queue's desired worker count over time.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: Policy,
    desired: u32,
    /// Since when demand has been below `desired`, and the most it asked for since:
    /// after the cooldown the fleet shrinks to that, not to a momentary dip.
    lower: Option<(i64, u32)>,
}

impl Autoscaler {
    pub fn new(policy: Policy) -> Self {
        let desired = policy.min.min(policy.max);
        Self {
            policy,
            desired,
            lower: None,
        }
    }

    /// Workers needed to run all of this work at once, within the limits.
    pub fn demand(&self, queued: u64, running: u64, slots_per_worker: Option<u32>) -> u32 {
        let slots = slots_per_worker
            .unwrap_or(self.policy.slots_per_worker)
            .max(1) as u64;
        let needed = (queued + running).div_ceil(slots);
        needed.clamp(
            self.policy.min as u64,
            self.policy.max.max(self.policy.min) as u64,
        ) as u32
    }

    /// Updates the desired count for the work seen at `now_ms`, and returns it. More
    /// work raises it at once; less lowers it only once the cooldown has passed with
    /// demand below it the whole time.
    pub fn observe(
        &mut self,
        queued: u64,
        running: u64,
        slots_per_worker: Option<u32>,
        now_ms: i64,
    ) -> u32 {
        let demand = self.demand(queued, running, slots_per_worker);
        if demand >= self.desired {
            self.desired = demand;
            self.lower = None;
            return self.desired;
        }
        let (since, peak) = match self.lower {
            Some((since, peak)) => (since, peak.max(demand)),
            None => (now_ms, demand),
        };
        if now_ms - since >= self.policy.cooldown_ms {
            self.desired = peak;
            // A further drop needs a cooldown of its own.
            self.lower = None;
        } else {
            self.lower = Some((since, peak));
        }
        self.desired
    }

    /// The desired count as last decided.
    pub fn desired(&self) -> u32 {
        self.desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        min: 1,
        max: 4,
        slots_per_worker: 10,
        cooldown_ms: 30_000,
    };

    #[test]
    fn demand_is_the_work_divided_by_slots_rounded_up_and_clamped() {
        let a = Autoscaler::new(POLICY);
        assert_eq!(a.demand(0, 0, None), 1, "min applies when idle");
        assert_eq!(a.demand(11, 0, None), 2);
        assert_eq!(a.demand(5, 15, None), 2);
        assert_eq!(a.demand(10_000, 0, None), 4, "max caps a burst");
        assert_eq!(
            a.demand(30, 0, Some(30)),
            1,
            "workers' own concurrency wins"
        );
        assert_eq!(
            a.demand(30, 0, Some(0)),
            4,
            "a zero report counts as one slot"
        );
    }

    #[test]
    fn it_ramps_up_at_once() {
        let mut a = Autoscaler::new(POLICY);
        assert_eq!(a.desired(), 1);
        assert_eq!(a.observe(15, 0, None, 0), 2);
        assert_eq!(a.observe(35, 0, None, 1), 4);
    }

    #[test]
    fn it_scales_down_only_after_the_cooldown() {
        let mut a = Autoscaler::new(POLICY);
        a.observe(40, 0, None, 0);
        assert_eq!(
            a.observe(0, 0, None, 1_000),
            4,
            "idle, but the cooldown has just begun"
        );
        assert_eq!(a.observe(0, 0, None, 30_000), 4);
        assert_eq!(
            a.observe(0, 0, None, 31_000),
            1,
            "30 s below: shrink to what was asked"
        );
    }

    #[test]
    fn after_the_cooldown_it_keeps_the_peak_of_the_window() {
        let mut a = Autoscaler::new(POLICY);
        a.observe(40, 0, None, 0);
        a.observe(0, 0, None, 1_000);
        a.observe(25, 0, None, 10_000); // 3 workers' worth, still below 4
        assert_eq!(a.observe(0, 0, None, 31_000), 3);
        assert_eq!(
            a.observe(0, 0, None, 32_000),
            3,
            "the next drop waits a new cooldown"
        );
        assert_eq!(a.observe(0, 0, None, 62_000), 1);
    }

    #[test]
    fn flapping_load_never_shrinks_the_fleet() {
        let mut a = Autoscaler::new(POLICY);
        let mut t = 0;
        for _ in 0..20 {
            assert_eq!(a.observe(40, 0, None, t), 4);
            t += 10_000;
            assert_eq!(
                a.observe(0, 0, None, t),
                4,
                "a dip shorter than the cooldown changes nothing"
            );
            t += 10_000;
        }
    }

    #[test]
    fn clamps_hold_even_when_min_exceeds_max() {
        let mut a = Autoscaler::new(Policy {
            min: 5,
            max: 2,
            slots_per_worker: 1,
            cooldown_ms: 0,
        });
        assert_eq!(
            a.observe(0, 0, None, 0),
            5,
            "min wins: a floor the operator asked for"
        );
        let mut a = Autoscaler::new(Policy {
            min: 0,
            max: 3,
            slots_per_worker: 1,
            cooldown_ms: 0,
        });
        assert_eq!(a.observe(0, 0, None, 0), 0, "scale to zero when idle");
        assert_eq!(a.observe(100, 0, None, 1), 3);
        assert_eq!(a.observe(0, 0, None, 2), 0);
    }
}
