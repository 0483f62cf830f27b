//! The health state machine: the only place that decides verdicts (anti-flap logic).
//!
//! Pure functions of (current verdict, consecutive counters, thresholds, and for
//! flap damping its memory and the time passed in): no clock of their own, no I/O,
//! so every rule is table-tested below.

use serde::{Deserialize, Serialize};

use super::Health;

/// How a verdict reads its probes: `failureThreshold`, `successThreshold` and
/// `flapDamping` of a NameService's healthCheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
    pub damping: bool,
}

impl Thresholds {
    pub fn of(ep: &crate::model::Endpoint) -> Self {
        Self {
            failure: ep.failure_threshold,
            success: ep.success_threshold,
            damping: ep.flap_damping,
        }
    }

    /// How many recent probes the failure-rate rule of flap damping looks at.
    pub fn window(self) -> u32 {
        (self.failure.max(1) * WINDOW_FACTOR).min(MAX_WINDOW)
    }
}

/// Flap damping: the failure-rate rule looks at the last `failureThreshold` x this
/// many probes...
pub const WINDOW_FACTOR: u32 = 4;
/// ... (at most this many: failureThreshold is at most 10)...
pub const MAX_WINDOW: u32 = 64;
/// ... and the flapping rule counts this many verdict changes...
pub const FLAP_CHANGES: usize = 4;
/// ... within this long, then holds the target out until it has passed every probe
/// for as long again.
pub const FLAP_WINDOW_MS: u64 = 120_000;

/// What flap damping remembers of one verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Damping {
    /// The most recent probe results, newest in bit 0; a set bit is a failure.
    pub recent: u64,
    /// How many results `recent` holds (at most the window).
    pub seen: u32,
    /// Unix milliseconds of the latest verdict changes between Healthy and
    /// Unhealthy, oldest first (at most [`FLAP_CHANGES`]).
    pub changes: Vec<u64>,
    /// Set while the flapping rule holds the target out: since when (Unix ms).
    pub held_since: Option<u64>,
    /// When the current run of passed probes began (Unix ms); `None` after a failure.
    pub passing_since: Option<u64>,
    /// The verdict the thresholds alone give (without damping): damping holds a
    /// target out only when this would let it in.
    #[serde(default = "pending")]
    pub raw: Health,
}

fn pending() -> Health {
    Health::Pending
}

impl Default for Damping {
    fn default() -> Self {
        Self {
            recent: 0,
            seen: 0,
            changes: Vec::new(),
            held_since: None,
            passing_since: None,
            raw: Health::Pending,
        }
    }
}

/// Why flap damping holds a target out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// At least half of the last `window` probes failed.
    FailureRate { failed: u32, window: u32 },
    /// The verdict changed [`FLAP_CHANGES`] times within [`FLAP_WINDOW_MS`]: out
    /// until every probe has passed for that long (`until_ms`, when the current run
    /// of passes keeps going; `None` while probes still fail).
    Flapping {
        since_ms: u64,
        until_ms: Option<u64>,
    },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::FailureRate { failed, window } => write!(
                f,
                "flap damping: {failed} of the last {window} probes failed"
            ),
            Hold::Flapping { .. } => write!(
                f,
                "flap damping: the verdict changed {FLAP_CHANGES} times within {} s; out until every probe passes for {} s",
                FLAP_WINDOW_MS / 1000,
                FLAP_WINDOW_MS / 1000
            ),
        }
    }
}

impl Damping {
    fn failed_in_window(&self, window: u32) -> u32 {
        let mask = if window >= 64 {
            u64::MAX
        } else {
            (1u64 << window) - 1
        };
        (self.recent & mask).count_ones()
    }

    /// The hold flap damping puts on the verdict now (`None`: damping does not
    /// decide). The flapping hold is reported for as long as it lasts; the
    /// failure rate only while the thresholds alone would let the target in.
    pub fn hold(&self, th: Thresholds) -> Option<Hold> {
        if !th.damping {
            return None;
        }
        if let Some(since) = self.held_since {
            return Some(Hold::Flapping {
                since_ms: since,
                until_ms: self.passing_since.map(|p| p.max(since) + FLAP_WINDOW_MS),
            });
        }
        if self.raw == Health::Unhealthy {
            return None;
        }
        let window = th.window();
        let failed = self.failed_in_window(window);
        (self.seen >= window && failed * 2 >= window)
            .then_some(Hold::FailureRate { failed, window })
    }
}

/// The verdict after one probe, with flap damping when the thresholds ask for it.
///
/// `streak` includes the probe (`ok`); `now_ms` is when it finished. Without
/// damping this is [`next`]. With it, two rules may hold a target Unhealthy that
/// the thresholds alone would let in:
///
/// - **failure rate:** once the last `failureThreshold` x 4 probes are known, at
///   least half of them failed;
/// - **flapping:** the verdict changed between Healthy and Unhealthy
///   [`FLAP_CHANGES`] times within [`FLAP_WINDOW_MS`] (the change that would make
///   it the 4th counts and is not made): out until it has passed every probe for
///   [`FLAP_WINDOW_MS`], a failure starting the count again.
///
/// Returns the verdict and the hold, when damping decided it.
pub fn step(
    current: Health,
    streak: Streak,
    ok: bool,
    th: Thresholds,
    d: &mut Damping,
    now_ms: u64,
) -> (Health, Option<Hold>) {
    let base = next(current, streak, th);
    if !th.damping {
        return (base, None);
    }
    let window = th.window();
    d.raw = next(d.raw, streak, th);
    d.recent = (d.recent << 1) | u64::from(!ok);
    d.seen = (d.seen + 1).min(window);
    if ok {
        d.passing_since.get_or_insert(now_ms);
    } else {
        d.passing_since = None;
    }
    // A hold ends once every probe has passed for the flap window.
    if let (Some(since), Some(passing)) = (d.held_since, d.passing_since)
        && now_ms.saturating_sub(passing.max(since)) >= FLAP_WINDOW_MS
    {
        d.held_since = None;
        d.changes.clear();
    }
    let mut new = if d.hold(th).is_some() {
        Health::Unhealthy
    } else {
        base
    };
    let flip = matches!(
        (current, new),
        (Health::Healthy, Health::Unhealthy) | (Health::Unhealthy, Health::Healthy)
    );
    if flip {
        d.changes.push(now_ms);
        if d.changes.len() > FLAP_CHANGES {
            d.changes.remove(0);
        }
        if d.changes.len() == FLAP_CHANGES && now_ms.saturating_sub(d.changes[0]) <= FLAP_WINDOW_MS
        {
            d.held_since = Some(now_ms);
            new = Health::Unhealthy;
        }
    }
    (new, d.hold(th))
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
        damping: false,
    };
    const T22: Thresholds = Thresholds {
        failure: 2,
        success: 2,
        damping: false,
    };
    const D31: Thresholds = Thresholds {
        damping: true,
        ..T31
    };
    const D11: Thresholds = Thresholds {
        failure: 1,
        success: 1,
        damping: true,
    };

    /// Runs probes one second apart ('+' success, '-' failure) through [`step`]
    /// from `start` (Unix ms), returning the verdicts and the damping memory.
    fn damped(
        th: Thresholds,
        seq: &str,
        h: &mut Health,
        s: &mut Streak,
        d: &mut Damping,
        clock: &mut u64,
    ) -> Vec<(Health, Option<Hold>)> {
        seq.chars()
            .map(|c| {
                *clock += 1000;
                *s = s.after(c == '+');
                let (n, hold) = step(*h, *s, c == '+', th, d, *clock);
                *h = n;
                (n, hold)
            })
            .collect()
    }

    fn verdicts(v: &[(Health, Option<Hold>)]) -> String {
        v.iter()
            .map(|(h, _)| match h {
                Pending => 'P',
                Healthy => 'H',
                Unhealthy => 'U',
                Unchecked => 'C',
            })
            .collect()
    }

    #[test]
    fn without_damping_step_is_next() {
        for th in [T31, T22] {
            for seq in ["+-+-+-+-+-+-+-+-", "---+++--+", "+--+--+--+--+--+"] {
                let (mut h, mut s, mut d, mut clock) =
                    (Pending, Streak::default(), Damping::default(), 0);
                let got = damped(th, seq, &mut h, &mut s, &mut d, &mut clock);
                assert!(got.iter().all(|(_, hold)| hold.is_none()));
                let want: String = verdicts(
                    &run(th, seq)
                        .into_iter()
                        .map(|h| (h, None))
                        .collect::<Vec<_>>(),
                );
                assert_eq!(verdicts(&got), want, "{th:?} {seq}");
                assert_eq!(d, Damping::default(), "damping memory used without damping");
            }
        }
    }

    #[test]
    fn failure_rate_holds_a_target_down_every_other_probe() {
        let (mut h, mut s, mut d, mut clock) = (Pending, Streak::default(), Damping::default(), 0);
        // failureThreshold 3: the window is 12 probes. Without damping a target down
        // every other probe is never Unhealthy; with it, Unhealthy once the window is
        // full (6 of 12 failed) ...
        let got = damped(D31, "+-+-+-+-+-+-", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "HHHHHHHHHHHU");
        assert_eq!(
            got[11].1,
            Some(Hold::FailureRate {
                failed: 6,
                window: 12
            })
        );
        assert_eq!(
            verdicts(
                &run(T31, "+-+-+-+-+-+-")
                    .into_iter()
                    .map(|h| (h, None))
                    .collect::<Vec<_>>()
            ),
            "HHHHHHHHHHHH"
        );
        // ... and stays out while it goes on (a success keeps the rate at half) ...
        let got = damped(D31, "+-+-", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "UUUU");
        // (what holds it is damping: the thresholds alone would let it in)
        assert!(
            got.iter()
                .all(|(_, hold)| matches!(hold, Some(Hold::FailureRate { .. }))),
            "{got:?}"
        );
        assert_eq!(d.raw, Healthy);
        // ... and comes back once fewer than half fail (successThreshold 1): the
        // first success still leaves 6 of the last 12 failed, the second 5.
        let got = damped(D31, "++", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "UH");
        assert_eq!(got[1].1, None);
        // Failures that reach failureThreshold in a row are no damping hold (after a
        // clean window).
        damped(D31, &"+".repeat(12), &mut h, &mut s, &mut d, &mut clock);
        let got = damped(D31, "---", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "HHU");
        assert_eq!(got[2].1, None);
    }

    #[test]
    fn the_window_must_be_full_before_the_rate_counts() {
        let (mut h, mut s, mut d, mut clock) = (Pending, Streak::default(), Damping::default(), 0);
        // Two failures of a brand-new target: Pending, not held (2 of 2 is "half",
        // but two probes are no window).
        let got = damped(D31, "--", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "PP");
        assert!(got.iter().all(|(_, hold)| hold.is_none()));
        // 5 of 12 failed: below half.
        let (mut h, mut s, mut d, mut clock) = (Pending, Streak::default(), Damping::default(), 0);
        let got = damped(D31, "+-+-+-+-+-++", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "HHHHHHHHHHHH");
    }

    #[test]
    fn four_changes_within_the_flap_window_hold_until_it_passes_for_as_long() {
        let (mut h, mut s, mut d, mut clock) = (Pending, Streak::default(), Damping::default(), 0);
        // Thresholds of 1 follow every probe: H U H ... U, then the 4th change (back
        // to Healthy) would come within 120 s: held Unhealthy instead. (Failures far
        // enough apart that the failure-rate rule, 2 of 4, never holds.)
        let got = damped(D11, "+-+++-+", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(verdicts(&got), "HUHHHUU");
        assert!(got[..6].iter().all(|(_, hold)| hold.is_none()), "{got:?}");
        let held_at = clock;
        assert_eq!(
            got[6].1,
            Some(Hold::Flapping {
                since_ms: held_at,
                until_ms: Some(held_at + FLAP_WINDOW_MS)
            })
        );
        // Passing probes for 119 s: still out.
        let got = damped(D11, &"+".repeat(119), &mut h, &mut s, &mut d, &mut clock);
        assert!(got.iter().all(|(h, _)| *h == Unhealthy));
        // A failure starts the count again.
        let got = damped(D11, "-", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(
            got[0].1,
            Some(Hold::Flapping {
                since_ms: held_at,
                until_ms: None
            })
        );
        let restart = clock + 1000;
        let got = damped(D11, &"+".repeat(120), &mut h, &mut s, &mut d, &mut clock);
        assert!(got.iter().all(|(h, _)| *h == Unhealthy));
        assert_eq!(
            got[119].1,
            Some(Hold::Flapping {
                since_ms: held_at,
                until_ms: Some(restart + FLAP_WINDOW_MS)
            })
        );
        // 120 s after the first of an unbroken run of passes: back, hold gone, and
        // the change back is the first the flapping rule counts from now on.
        let got = damped(D11, "+", &mut h, &mut s, &mut d, &mut clock);
        assert_eq!(got[0], (Healthy, None));
        assert_eq!(d.held_since, None);
        assert_eq!(d.changes, [clock]);
    }

    #[test]
    fn down_half_of_every_three_seconds_is_held_and_back_once_stable() {
        // Down 1.5 s of every 3, probed once a second: depending on the phase, one or
        // two probes of every three fail. Thresholds of 1 follow every probe (the
        // issue measured 21 answer changes in 30 s); damping holds the target out
        // within the first 6 s of flapping and keeps it out while it flaps. One
        // failure in three: its verdict changes 4 times within 120 s, so it is back
        // only once it has passed every probe for 120 s. Two in three: the failure
        // rate (at least 2 of the last 4) holds it from its first pass on, its
        // verdict never changes again, and it is back as soon as fewer than half of
        // the last 4 probes failed.
        for (cycle, flapping_rule) in [("-++", true), ("--+", false)] {
            let flapping = cycle.repeat(10);
            let plain = run(
                Thresholds {
                    damping: false,
                    ..D11
                },
                &format!("+{flapping}"),
            );
            let changes = plain.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(changes >= 19, "{cycle}: {changes} changes without damping");

            let (mut h, mut s, mut d, mut clock) =
                (Pending, Streak::default(), Damping::default(), 0);
            damped(D11, "+", &mut h, &mut s, &mut d, &mut clock);
            let got = damped(D11, &flapping, &mut h, &mut s, &mut d, &mut clock);
            let held = got.iter().position(|(_, hold)| hold.is_some()).unwrap();
            assert!(held < 6, "{cycle}: {}", verdicts(&got));
            // Out from then on; every pass, which the thresholds alone would let
            // in, is held by damping.
            assert!(
                got[held..]
                    .iter()
                    .zip(flapping[held..].chars())
                    .all(|((h, hold), c)| *h == Unhealthy && (c == '-' || hold.is_some())),
                "{cycle}: {} {got:?}",
                verdicts(&got)
            );
            assert_eq!(
                matches!(got[29].1, Some(Hold::Flapping { .. })),
                flapping_rule,
                "{cycle}: {got:?}"
            );
            // A last failure, then stable.
            damped(D11, "-", &mut h, &mut s, &mut d, &mut clock);
            let got = damped(D11, &"+".repeat(121), &mut h, &mut s, &mut d, &mut clock);
            let back = got.iter().position(|(h, _)| *h == Healthy).unwrap();
            if flapping_rule {
                // Out until its passes span 120 s (the first and 119 s of them).
                assert_eq!(back, 120, "{cycle}: {}", verdicts(&got));
            } else {
                assert!(back < 4, "{cycle}: {}", verdicts(&got));
            }
            assert!(
                got[back..].iter().all(|v| *v == (Healthy, None)),
                "{cycle}: {}",
                verdicts(&got)
            );
        }
    }

    #[test]
    fn changes_spread_wider_than_the_flap_window_do_not_hold() {
        let (mut h, mut s, mut d, mut clock) = (Pending, Streak::default(), Damping::default(), 0);
        damped(D11, "+-+", &mut h, &mut s, &mut d, &mut clock);
        // 121 s of passes (the failure-rate window, 4 probes, forgets the failure).
        damped(D11, &"+".repeat(121), &mut h, &mut s, &mut d, &mut clock);
        let got = damped(D11, "-+", &mut h, &mut s, &mut d, &mut clock);
        // The 3rd and 4th changes; the 1st is more than 120 s before the 4th.
        assert_eq!(verdicts(&got), "UH");
        assert!(got.iter().all(|(_, hold)| hold.is_none()));
    }

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
                    damping: false,
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
