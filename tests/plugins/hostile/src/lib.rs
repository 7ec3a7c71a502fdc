//! Hostile plugin for the sandbox tests, written against the raw WIT so it
//! can break the contract in ways the SDK would not let it. The manifest's
//! `[config] attack = "..."` picks what it does on every batch.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

wit_bindgen::generate!({ world: "detector", path: "../../../wit/v0.1" });

use std::sync::Mutex;

use vigil::detector::host;
use vigil::detector::types::Level;

static ATTACK: Mutex<String> = Mutex::new(String::new());

struct Hostile;

fn ok(batch: &[Request], score: f32, reason: &str) -> Vec<Signal> {
    batch.iter().map(|_| Signal { score, labels: vec![], reason: reason.to_string() }).collect()
}

#[inline(never)]
fn recurse(n: u64, pad: [u64; 16]) -> u64 {
    let p = std::hint::black_box(pad);
    if n == 0 { p[0] } else { recurse(n - 1, p).wrapping_add(p[(n % 16) as usize]) }
}

fn try_everything() -> String {
    // What ambient authority is there? Each attempt's outcome goes into the
    // reason, so the test can see both that it failed and how.
    let mut out = Vec::new();
    for path in ["/etc/passwd", "/etc/hostname", "/proc/self/environ", ".", "/"] {
        out.push(format!("read {path}: {:?}", std::fs::read(path).map(|b| b.len())));
        out.push(format!("list {path}: {:?}", std::fs::read_dir(path).map(|d| d.count())));
    }
    out.push(format!("write: {:?}", std::fs::write("/tmp/vigil-hostile", b"x")));
    out.push(format!("env: {:?}", std::env::vars().collect::<Vec<_>>()));
    out.push(format!("args: {:?}", std::env::args().collect::<Vec<_>>()));
    out.push(format!("cwd: {:?}", std::env::current_dir()));
    let mut line = String::new();
    out.push(format!("stdin: {:?} {line:?}", std::io::stdin().read_line(&mut line)));
    out.push(format!("tcp: {:?}", std::net::TcpStream::connect("127.0.0.1:9").map(|_| ())));
    out.push(format!("udp: {:?}", std::net::UdpSocket::bind("0.0.0.0:0").map(|_| ())));
    out.push(format!("dns: {:?}", std::net::ToSocketAddrs::to_socket_addrs("localhost:80").map(|a| a.count())));
    out.join("; ")
}

impl Guest for Hostile {
    fn info() -> Info {
        Info { version: "0.1.0".into(), description: "attacks the host".into() }
    }

    fn init(config: String) -> Result<(), String> {
        // Minimal parsing, no serde: {"attack":"NAME"}.
        let attack = config.split("\"attack\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("none");
        *ATTACK.lock().unwrap() = attack.to_string();
        if attack == "init-loop" {
            loop {
                std::hint::black_box(0);
            }
        }
        Ok(())
    }

    fn score(batch: Vec<Request>) -> Result<Vec<Signal>, String> {
        let attack = ATTACK.lock().unwrap().clone();
        Ok(match attack.as_str() {
            "loop" => loop {
                std::hint::black_box(0);
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let n = recurse(u64::MAX / 2, [batch.len() as u64; 16]);
                ok(&batch, 0.0, &n.to_string())
            }
            "panic" => panic!("hostile: panic"),
            "nan" => ok(&batch, f32::NAN, ""),
            "infinite" => ok(&batch, f32::INFINITY, ""),
            "range" => ok(&batch, 1.5, ""),
            "negative" => ok(&batch, -0.1, ""),
            "short" => ok(&batch[1..], 0.0, ""),
            "long" => {
                let mut v = ok(&batch, 0.0, "");
                v.push(Signal { score: 0.0, labels: vec![], reason: String::new() });
                v
            }
            "many-labels" => batch
                .iter()
                .map(|_| Signal {
                    score: 0.1,
                    labels: (0..10_000).map(|i| i.to_string()).collect(),
                    reason: String::new(),
                })
                .collect(),
            "giant-label" => batch
                .iter()
                .map(|_| Signal { score: 0.1, labels: vec!["x".repeat(1 << 20)], reason: String::new() })
                .collect(),
            "giant-reason" => ok(&batch, 0.1, &"y".repeat(8 << 20)),
            "log-flood" => {
                for i in 0..100_000 {
                    host::log(Level::Error, &format!("flood {i} {}", "z".repeat(200)));
                    println!("stdout flood {i}");
                    eprintln!("stderr flood {i}");
                }
                ok(&batch, 0.0, "flooded")
            }
            "state-flood" => {
                let blob = vec![7u8; 1024];
                for k in 0..200_000u64 {
                    host::state_set(k, &blob, None);
                }
                host::state_set(u64::MAX, &vec![0u8; 10 << 20], None);
                // The batched call, too: many entries and one oversized value.
                use vigil::detector::types::StateEntry;
                for chunk in 0..100u64 {
                    let entries: Vec<StateEntry> = (0..2_000u64)
                        .map(|k| StateEntry {
                            key: 1_000_000 + chunk * 2_000 + k,
                            value: blob.clone(),
                            expires_at_ms: None,
                        })
                        .collect();
                    host::state_set_many(&entries);
                }
                host::state_set_many(&[StateEntry {
                    key: u64::MAX - 1,
                    value: vec![0u8; 10 << 20],
                    expires_at_ms: None,
                }]);
                ok(&batch, 0.0, "flooded")
            }
            "ambient" => ok(&batch, 0.0, &try_everything()),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                ok(&batch, 0.0, "woke")
            }
            "slow" => {
                // About 50 ms of work: well inside a 1 s limit.
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(50) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                ok(&batch, 0.25, "slow but in time")
            }
            _ => ok(&batch, 0.0, ""),
        })
    }
}

#[cfg(target_arch = "wasm32")]
export!(Hostile);
