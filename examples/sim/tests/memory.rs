//! Bounded memory on a long run. Its own test binary: RSS is per process,
//! and other tests in the same process would move it.

use vigil_sim::{Scenario, Simulator, population};

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
fn memory_stays_bounded_on_a_long_run() {
    let mut s = Scenario::default_eval(11);
    s.days = 60.0;
    s.benign.accounts = 3_000;
    for c in &mut s.campaigns {
        c.accounts = 100;
        c.end_day = 60.0;
        c.requests_per_account = 3_000.0;
    }
    let pop = population(&s);
    let accounts = pop.accounts.len();
    let mut sim = Simulator::new(&s, &pop);
    let mut before = 0;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(r) = sim.next() {
        n += 1;
        bytes += r.prompt.len();
        assert!(sim.pending() <= accounts);
        if n == 200_000 {
            before = rss_kib();
        }
        if n == 3_000_000 {
            break;
        }
    }
    assert_eq!(n, 3_000_000, "the scenario is long enough");
    let grown = rss_kib().saturating_sub(before);
    // Hundreds of MB of prompts streamed through; memory must not follow.
    assert!(bytes > 200 << 20);
    assert!(grown < 64 << 10, "RSS grew by {grown} KiB over 2.8 million requests");
}
