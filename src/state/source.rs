//! One shape for every source: a step, what it reports, and how it waits
//! for the next; and the one loop that drives them all.
//!
//! The driver times each step, counts its CPU and errors under the
//! source's collector name, wakes the renderer when the step published
//! something new, and then lets the source wait as it needs to: most sleep
//! out an interval, the pool source reads process events meanwhile, the
//! kernel log backs off after a failure.

use std::time::{Duration, Instant};

use super::{thread_cpu_seconds, Sinks};

/// What one step of a source did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stepped {
    /// Values that could not be read.
    pub errors: u64,
    /// Whether it published something the renderer should see.
    pub changed: bool,
    /// How the step is counted under the source's collector name.
    pub counted: Counted,
}

impl Stepped {
    /// A cycle with `errors` and whether it `changed` anything.
    pub fn cycle(errors: u64, changed: bool) -> Stepped {
        Stepped {
            errors,
            changed,
            counted: Counted::Cycle,
        }
    }
}

/// How the driver counts a step in `badgateway_collector_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Counted {
    /// A cycle: its wall time, CPU and errors.
    #[default]
    Cycle,
    /// Its CPU alone: a quick pass between two cycles.
    CpuOnly,
    /// Not at all: a step that is a blocking follow, not a cycle.
    Uncounted,
}

/// A source as the driver runs it.
pub trait Source {
    /// The `collector` label its steps are counted under.
    fn collector(&self) -> &'static str;

    /// Before the first step: e.g. wait for the first publication of a
    /// source this one reads.
    fn start(&mut self) {}

    /// One step; `now` is when it started.
    fn step(&mut self, now: Instant) -> Stepped;

    /// Wait until the next step is due; `started` is when the last one
    /// started. Most sources [`pace`] to their interval.
    fn wait(&mut self, started: Instant);

    /// Read what there is to read now, to its end, without waiting: how a
    /// one-shot run (`diagnose`) steps a source, once. One counted step
    /// unless the source says otherwise: a log reads on until nothing
    /// changes ([`step_until`]), the kernel log replays its ring buffer,
    /// the judge judges what is still waiting.
    fn catch_up(&mut self, sinks: &Sinks) -> Stepped {
        step_once(sinks, self).1
    }
}

/// Steps a [`step_until`] makes at most: a log polled 32 MiB at a time
/// is read to its end however fast its writer is, but not forever.
pub const MAX_CATCH_UP_STEPS: usize = 4096;

/// Step `source` (counted, as [`step_once`]) until `done` says so after a
/// step, at most [`MAX_CATCH_UP_STEPS`] times; returns the last step.
pub fn step_until<S: Source + ?Sized>(
    sinks: &Sinks,
    source: &mut S,
    mut done: impl FnMut(&Stepped) -> bool,
) -> Stepped {
    let mut last = Stepped::default();
    for _ in 0..MAX_CATCH_UP_STEPS {
        last = step_once(sinks, source).1;
        if done(&last) {
            break;
        }
    }
    last
}

/// Sleep the rest of `interval` since `started`: the plain wait.
pub fn pace(interval: Duration, started: Instant) {
    std::thread::sleep(interval.saturating_sub(started.elapsed()));
}

/// Run one step of `source`, timed and counted, and signal its change.
pub fn step_once<S: Source + ?Sized>(sinks: &Sinks, source: &mut S) -> (Instant, Stepped) {
    let started = Instant::now();
    let cpu0 = thread_cpu_seconds();
    let s = source.step(started);
    let cpu = thread_cpu_seconds() - cpu0;
    let collectors = &sinks.collectors;
    match s.counted {
        Counted::Cycle => collectors.record(source.collector(), started.elapsed(), cpu, s.errors),
        Counted::CpuOnly => collectors.add_cpu(source.collector(), cpu),
        Counted::Uncounted => {}
    }
    if s.changed {
        sinks.changed.notify();
    }
    (started, s)
}

/// Run `source` forever on the calling thread: start it, then step and
/// wait, step and wait.
pub fn drive<S: Source + ?Sized>(sinks: &Sinks, source: &mut S) -> ! {
    source.start();
    loop {
        let (started, _) = step_once(sinks, source);
        source.wait(started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that counts its steps and reports a fixed result.
    struct Fixed {
        steps: u32,
        result: Stepped,
    }

    impl Source for Fixed {
        fn collector(&self) -> &'static str {
            "fixed"
        }
        fn step(&mut self, _now: Instant) -> Stepped {
            self.steps += 1;
            self.result
        }
        fn wait(&mut self, _started: Instant) {}
    }

    #[test]
    fn a_catch_up_is_one_step_unless_the_source_reads_on() {
        let sinks = Sinks::new(4);
        let mut s = Fixed {
            steps: 0,
            result: Stepped::cycle(0, true),
        };
        s.catch_up(&sinks);
        assert_eq!(s.steps, 1);
        let last = step_until(&sinks, &mut s, |_| true);
        assert_eq!((s.steps, last), (2, Stepped::cycle(0, true)));
        step_until(&sinks, &mut s, |_| false);
        assert_eq!(s.steps as usize, 2 + MAX_CATCH_UP_STEPS);
        assert_eq!(
            sinks.collectors.all()["fixed"].cycles as usize,
            s.steps as usize
        );
    }

    #[test]
    fn a_cycle_is_counted_and_signals_its_change() {
        let sinks = Sinks::new(4);
        let mut s = Fixed {
            steps: 0,
            result: Stepped::cycle(2, true),
        };
        step_once(&sinks, &mut s);
        step_once(&sinks, &mut s);
        let c = &sinks.collectors.all()["fixed"];
        assert_eq!((s.steps, c.cycles, c.errors), (2, 2, 4));
        assert!(sinks.changed.wait(Duration::ZERO));
    }

    #[test]
    fn a_quick_pass_counts_cpu_alone_and_an_uncounted_step_nothing() {
        let sinks = Sinks::new(4);
        let mut s = Fixed {
            steps: 0,
            result: Stepped {
                errors: 3,
                changed: false,
                counted: Counted::CpuOnly,
            },
        };
        step_once(&sinks, &mut s);
        let c = &sinks.collectors.all()["fixed"];
        assert_eq!((c.cycles, c.errors), (0, 0));
        assert!(!sinks.changed.wait(Duration::ZERO));
        s.result.counted = Counted::Uncounted;
        let sinks = Sinks::new(4);
        step_once(&sinks, &mut s);
        assert!(sinks.collectors.all().is_empty());
    }
}
