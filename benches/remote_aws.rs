//! AWS KMS through hsmux vs the AWS SDK's own client, both against one moto server on
//! 127.0.0.1: per operation the median latency of sequential calls, and the throughput
//! from 1 and 8 threads, with the ratio hsmux / direct. The direct client is the same
//! SDK (keep-alive pool, SigV4) called with `block_on` from each thread, so the ratio is
//! what the PKCS#11 layer, the runtime hand-off and the key lookup add.
//!
//! Run: `cargo build --release && cargo bench --bench remote_aws` (BENCH_SECS per
//! throughput cell, default 2; needs .venv from scripts/deps.sh for moto_server).

#[path = "../tests/aws_servers/mod.rs"]
mod aws_servers;
#[path = "../tests/common/mod.rs"]
mod common;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MacAlgorithmSpec, MessageType, SigningAlgorithmSpec};
use aws_servers::*;
use common::*;
use cryptoki_sys::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEQUENTIAL: usize = 200;

#[derive(Clone, Copy)]
enum Op {
    EcdsaSign,
    Hmac,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::EcdsaSign => "Sign ECDSA P-256 (digest)",
            Op::Hmac => "GenerateMac HMAC-SHA256",
        }
    }
}

struct Hsmux {
    m: Module,
    slot: CK_SLOT_ID,
    ec: CK_OBJECT_HANDLE,
    mac: CK_OBJECT_HANDLE,
}
unsafe impl Sync for Hsmux {}
unsafe impl Send for Hsmux {}

impl Hsmux {
    fn once(&self, h: CK_SESSION_HANDLE, op: Op) {
        let digest = [7u8; 32];
        let r = match op {
            Op::EcdsaSign => sign(&self.m, h, mech(CKM_ECDSA), self.ec, &digest),
            Op::Hmac => sign(
                &self.m,
                h,
                mech(CKM_SHA256_HMAC),
                self.mac,
                b"bench message",
            ),
        };
        assert!(r.is_ok(), "{}: {:?}", op.name(), r.err().map(rv_name));
    }
}

struct Direct {
    rt: tokio::runtime::Runtime,
    c: aws_sdk_kms::Client,
    ec: String,
    mac: String,
}

impl Direct {
    fn once(&self, op: Op) {
        let c = self.c.clone();
        let (ec, mac) = (self.ec.clone(), self.mac.clone());
        self.rt.block_on(async move {
            match op {
                Op::EcdsaSign => {
                    c.sign()
                        .key_id(ec)
                        .message(Blob::new(vec![7u8; 32]))
                        .message_type(MessageType::Digest)
                        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                        .send()
                        .await
                        .expect("direct Sign");
                }
                Op::Hmac => {
                    c.generate_mac()
                        .key_id(mac)
                        .message(Blob::new(b"bench message".to_vec()))
                        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
                        .send()
                        .await
                        .expect("direct GenerateMac");
                }
            }
        });
    }
}

fn p50(mut f: impl FnMut()) -> Duration {
    for _ in 0..10 {
        f();
    }
    let mut t: Vec<Duration> = (0..SEQUENTIAL)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

/// Operations per second from `threads` threads running `f` for `secs`.
fn throughput(threads: usize, secs: f64, f: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, f) = (stop.clone(), count.clone(), f.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    f();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let moto = moto();
    let key = |spec: &str, usage: &str| {
        let (st, v) = api(
            moto.port,
            "TrentService.CreateKey",
            "AKIDTEST",
            json!({"KeySpec": spec, "KeyUsage": usage}),
        );
        assert_eq!(st, 200, "{v}");
        v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
    };
    let ec_id = key("ECC_NIST_P256", "SIGN_VERIFY");
    let mac_id = key("HMAC_256", "GENERATE_VERIFY_MAC");
    let dir = std::env::temp_dir().join(format!("hsmux-bench-aws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hsmux.toml"),
        format!(
            "[[slot]]\nlabel = \"aws\"\nbackend = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\nkeys = [\"{ec_id}\", \"{mac_id}\"]\n",
            moto.url()
        ),
    )
    .unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let m = load();
    assert_eq!(initialize(&m), CKR_OK);
    let slot = slot_labelled(&m, "aws", true);
    let h = open(&m, slot, false);
    assert_eq!(login(&m, h, CKU_USER, b"x"), CKR_OK);
    let by_label = |label: &str, class| {
        let f = find(
            &m,
            h,
            &mut Template::new()
                .ulong(CKA_CLASS, class)
                .bytes(CKA_LABEL, label.as_bytes()),
        );
        assert_eq!(f.len(), 1, "{label}");
        f[0]
    };
    let (ec, mac) = (
        by_label(&ec_id, CKO_PRIVATE_KEY),
        by_label(&mac_id, CKO_SECRET_KEY),
    );
    let hs = Arc::new(Hsmux { m, slot, ec, mac });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let conf = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(moto.url())
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "testing", "testing", None, None, "bench",
            ))
            .load(),
    );
    let direct = Arc::new(Direct {
        c: aws_sdk_kms::Client::new(&conf),
        rt,
        ec: ec_id,
        mac: mac_id,
    });

    println!("AWS KMS on moto_server, 127.0.0.1; p50 of {SEQUENTIAL} sequential calls, throughput over {secs} s");
    println!("| operation | p50 hsmux | p50 direct | ratio | 1 thread hsmux/direct (ops/s) | 8 threads hsmux/direct (ops/s) | ratio 8 thr |");
    println!("|---|---|---|---|---|---|---|");
    for op in [Op::EcdsaSign, Op::Hmac] {
        let p_h = p50(|| hs.once(h, op));
        let p_d = p50(|| direct.once(op));
        let cell = |threads: usize| {
            let hs2 = hs.clone();
            let via: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                // One session per call: sessions are cheap and thread-safe per thread.
                thread_local!(static S: std::cell::Cell<CK_SESSION_HANDLE> = const { std::cell::Cell::new(0) });
                let s = S.with(|c| {
                    if c.get() == 0 {
                        c.set(open(&hs2.m, hs2.slot, false));
                    }
                    c.get()
                });
                hs2.once(s, op)
            });
            let d = direct.clone();
            let dir: Arc<dyn Fn() + Send + Sync> = Arc::new(move || d.once(op));
            (
                throughput(threads, secs, via),
                throughput(threads, secs, dir),
            )
        };
        let (h1, d1) = cell(1);
        let (h8, d8) = cell(8);
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} | {h1:.0} / {d1:.0} | {h8:.0} / {d8:.0} | {:.2} |",
            op.name(),
            p_h.as_secs_f64() * 1e3,
            p_d.as_secs_f64() * 1e3,
            p_h.as_secs_f64() / p_d.as_secs_f64(),
            h8 / d8
        );
    }
    drop(moto);
}
