//! Edit + validate latency of the flag editor on a 4 KB kubeadm manifest, against the floor of
//! one serde_norway parse of the same bytes (the editor parses twice: input and re-check).
//! `cargo bench --bench editor`; `KUBEHARDEN_BENCH_QUICK=1` runs fewer iterations.

use kubeharden::manifest::{edit_flags, FlagEdit};
use std::hint::black_box;
use std::time::{Duration, Instant};

const MANIFEST: &[u8] =
    include_bytes!("../tests/data/manifests/kubeadm-v1.30.14/kube-apiserver.yaml");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(n: usize, mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    median(samples)
}

fn main() {
    let n = if std::env::var_os("KUBEHARDEN_BENCH_QUICK").is_some() {
        200
    } else {
        3000
    };
    let set = [FlagEdit::Set {
        name: "profiling".into(),
        value: "false".into(),
    }];
    let replace = [FlagEdit::Set {
        name: "secure-port".into(),
        value: "7443".into(),
    }];
    let unset = [FlagEdit::Unset {
        name: "allow-privileged".into(),
    }];
    let noop = [FlagEdit::Set {
        name: "secure-port".into(),
        value: "6443".into(),
    }];
    // Warm up allocator and caches.
    for _ in 0..50 {
        black_box(edit_flags(MANIFEST, None, &set).unwrap());
    }
    let floor = time(n, || {
        black_box(serde_norway::from_slice::<serde_norway::Value>(black_box(MANIFEST)).unwrap());
    });
    println!(
        "## Flag editor, {} byte manifest, {n} iterations, median\n",
        MANIFEST.len()
    );
    println!("| operation | median µs | / one YAML parse |");
    println!("|---|---:|---:|");
    println!(
        "| **floor**: one serde_norway parse | {:.1} | 1.00× |",
        floor.as_secs_f64() * 1e6
    );
    for (name, edits) in [
        ("add --profiling=false", &set[..]),
        ("replace --secure-port", &replace[..]),
        ("remove --allow-privileged", &unset[..]),
        ("no-op (already set)", &noop[..]),
    ] {
        let t = time(n, || {
            black_box(edit_flags(black_box(MANIFEST), None, edits).unwrap());
        });
        println!(
            "| {name} | {:.1} | {:.2}× |",
            t.as_secs_f64() * 1e6,
            t.as_secs_f64() / floor.as_secs_f64()
        );
    }
}
