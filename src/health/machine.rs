//! The health state machine: the only place that decides verdicts (anti-flap logic).
//!
//! Pure functions of (current verdict, consecutive counters, thresholds): no clock,
//! no I/O, so every rule is table-tested below.

use super::Health;

/// `failureThreshold` and `successThreshold` of a NameService's healthCheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

impl Thresholds {
    pub fn of(ep: &crate::model::Endpoint) -> Self {
        Self {
            failure: ep.failure_threshold,
            success: ep.success_threshold,
        }
    }
}

/// The consecutive results of one probe stream. Shared by every verdict kept on
/// that stream: they all see the same probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streak {
    pub successes: u32,
    pub failures: u32,
}

impl Streak {
    /// The streak after one more probe result.
    pub fn after(self, ok: bool) -> Streak {
        if ok {
            Streak {
                successes: self.successes.saturating_add(1),
                failures: 0,
            }
        } else {
            Streak {
                successes: 0,
                failures: self.failures.saturating_add(1),
            }
        }
    }
}

/// The verdict after a probe, given the streak *including* that probe.
///
/// - `success` consecutive successes make a target Healthy (from Pending or Unhealthy);
/// - `failure` consecutive failures make it Unhealthy (from Pending or Healthy);
/// - anything shorter keeps the current verdict: a Healthy target survives
///   `failure - 1` failures in a row, an Unhealthy one stays out until it has
///   strung together `success` successes, and a Pending one stays Pending.
pub fn next(current: Health, streak: Streak, th: Thresholds) -> Health {
    if streak.successes >= th.success.max(1) {
        Health::Healthy
    } else if streak.failures >= th.failure.max(1) {
        Health::Unhealthy
    } else {
        current
    }
}

/// The verdict of a verdict newly attached to a probe stream that already has a
/// history (a service sharing a VIP with other thresholds, or a PUT that only changed
/// thresholds): what the streak proves under the new thresholds, else what the stream's
/// other verdict said (`sibling`), else Pending.
pub fn seed(streak: Streak, th: Thresholds, sibling: Option<Health>) -> Health {
    next(sibling.unwrap_or(Health::Pending), streak, th)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::*;

    const T31: Thresholds = Thresholds {
        failure: 3,
        success: 1,
    };
    const T22: Thresholds = Thresholds {
        failure: 2,
        success: 2,
    };

    /// Runs a sequence of probe results ('+' success, '-' failure) from Pending and
    /// returns the verdict after each.
    fn run(th: Thresholds, seq: &str) -> Vec<Health> {
        let mut h = Pending;
        let mut s = Streak::default();
        seq.chars()
            .map(|c| {
                s = s.after(c == '+');
                h = next(h, s, th);
                h
            })
            .collect()
    }

    #[test]
    fn table() {
        let cases: &[(Thresholds, &str, &[Health])] = &[
            // One success proves a new target with successThreshold 1.
            (T31, "+", &[Healthy]),
            // Pending stays Pending until proven, and fails after failureThreshold.
            (T31, "--", &[Pending, Pending]),
            (T31, "---", &[Pending, Pending, Unhealthy]),
            (T22, "+", &[Pending]),
            (T22, "+-+", &[Pending, Pending, Pending]),
            (T22, "++", &[Pending, Healthy]),
            // Healthy survives failureThreshold-1 failures, an interrupted run resets.
            (
                T31,
                "+--+--+",
                &[
                    Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy,
                ],
            ),
            (T31, "+---", &[Healthy, Healthy, Healthy, Unhealthy]),
            // Unhealthy needs successThreshold successes in a row to come back.
            (
                T22,
                "++--+-++",
                &[
                    Pending, Healthy, Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Healthy,
                ],
            ),
            // Thresholds of 1 follow every probe.
            (
                Thresholds {
                    failure: 1,
                    success: 1,
                },
                "+-+-",
                &[Healthy, Unhealthy, Healthy, Unhealthy],
            ),
        ];
        for (th, seq, want) in cases {
            assert_eq!(run(*th, seq), *want, "thresholds {th:?}, sequence {seq}");
        }
    }

    #[test]
    fn streak_counts_and_saturates() {
        let s = Streak::default().after(true).after(true);
        assert_eq!(
            s,
            Streak {
                successes: 2,
                failures: 0
            }
        );
        assert_eq!(
            s.after(false),
            Streak {
                successes: 0,
                failures: 1
            }
        );
        let max = Streak {
            successes: u32::MAX,
            failures: 0,
        };
        assert_eq!(max.after(true).successes, u32::MAX);
    }

    #[test]
    fn seeding_from_a_shared_stream() {
        let long_ok = Streak {
            successes: 5,
            failures: 0,
        };
        let two_fails = Streak {
            successes: 0,
            failures: 2,
        };
        // The streak decides when it is long enough under the new thresholds...
        assert_eq!(seed(long_ok, T22, None), Healthy);
        assert_eq!(seed(two_fails, T22, Some(Healthy)), Unhealthy);
        // ...else the sibling verdict carries over, else Pending.
        assert_eq!(seed(two_fails, T31, Some(Healthy)), Healthy);
        assert_eq!(
            seed(
                Streak {
                    successes: 1,
                    failures: 0
                },
                T22,
                Some(Unhealthy)
            ),
            Unhealthy
        );
        assert_eq!(seed(Streak::default(), T31, None), Pending);
    }
}
