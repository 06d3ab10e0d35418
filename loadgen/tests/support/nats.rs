//! NATS fixtures shared by the loadgen and worker NATS tests (the worker's tests include this
//! file by path, next to `tls.rs`): nats-server on a free port, a raw NATS session for injecting
//! and snooping messages, the nats-py helpers, and the start-up failures that must each end a
//! binary with one clear line and exit status 3.
#![allow(dead_code)]

use crate::tls::{expect_exit_3, p, pki, PASSWORD, USER};
use bytes::{Bytes, BytesMut};
use rr_common::broker::ConnectOptions;
use rr_common::link::{self, SessionSpec};
use rr_common::nats::codec::{self, Op, Publish, MAX_CORRELATION};
use rr_common::nats::link::Decoder;
use rr_common::nats::Nats;
use rr_testkit::{free_port, py_script, NatsOptions, NatsServer, Process};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn nats() -> NatsServer {
    NatsServer::start(NatsOptions::new()).expect("nats-server starts (make test installs it)")
}

/// A raw NATS session (as our transport opens it) with plain subscriptions to `subjects`.
pub async fn raw_nats(url: &str, id: &str, subjects: &[&str]) -> link::Session<Decoder> {
    #[derive(clap::Parser)]
    struct Opts {
        #[command(flatten)]
        connect: ConnectOptions,
    }
    let opts = <Opts as clap::Parser>::try_parse_from(["raw", "--broker", url])
        .expect("options")
        .connect;
    let spec = SessionSpec {
        url: url.parse().expect("NATS URL"),
        opts: Arc::new(opts),
        client_id: id.into(),
        subscriptions: subjects.iter().map(|s| (s.to_string(), 0)).collect(),
        bind: None,
        tls: None,
    };
    link::establish::<Nats>(&spec)
        .await
        .expect("raw NATS session")
}

/// One `PUB`/`HPUB` as bytes.
pub fn nats_pub(subject: &str, reply: Option<&str>, corr: Option<&[u8]>, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    codec::encode_publish(
        &mut b,
        &Publish {
            subject: subject.as_bytes(),
            reply: reply.map(str::as_bytes),
            correlation: corr,
            payload: &[body],
        },
        usize::MAX,
    )
    .expect("encodable");
    b.freeze()
}

/// The next message a raw session receives: (subject, reply, correlation).
pub async fn next_msg(
    s: &mut link::Session<Decoder>,
    within: Duration,
) -> (String, Option<String>, Option<Vec<u8>>) {
    let deadline = Instant::now() + within;
    loop {
        let mut used = 0;
        let mut found = None;
        while let Ok(Some((op, len))) = codec::next_op(&s.pending[used..], usize::MAX) {
            used += len;
            if let Op::Msg(m) = op {
                let mut out = [0u8; MAX_CORRELATION];
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                found = Some((
                    text(m.subject),
                    m.reply.map(text),
                    m.correlation(&mut out).ok().flatten().map(<[u8]>::to_vec),
                ));
                break;
            }
        }
        let _ = s.pending.split_to(used);
        if let Some(f) = found {
            return f;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no message within {within:?}");
        tokio::time::timeout(left, s.reader.read_into(&mut s.pending))
            .await
            .expect("a message in time")
            .expect("read");
    }
}

/// `python3 testkit/py/{script} args...`, output captured; killed on drop.
pub fn python(script: &str, args: &[&str]) -> Process {
    let path = py_script(script);
    let mut all = vec![path.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    Process::spawn_with_args(Path::new("python3"), &[], &all).expect("python3 runs")
}

/// The start-up failures of a binary against nats-server: each exits 3 with one line that
/// says what to check, and never prints the password.
pub fn nats_startup_failures(bin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"));
    let with_password = NatsServer::start(NatsOptions::new().user(USER, PASSWORD)).unwrap();
    let tls = NatsServer::start(NatsOptions::new().tls(pki.server_files(false))).unwrap();
    let mutual = NatsServer::start(NatsOptions::new().tls(pki.server_files(true))).unwrap();
    let (plain, tls_url, mtls) = (with_password.url(), tls.url(), mutual.url());
    let tls_as_plain = format!("nats://127.0.0.1:{}", tls.port());
    let ca = p(&pki.ca);
    let fast = Duration::from_secs(3);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "NATS: wrong password",
            vec![
                ("BROKER", &plain),
                ("BROKER_USERNAME", USER),
                ("BROKER_PASSWORD", "wrong-Zq8x-secret"),
            ],
            vec!["rejected the credentials", "BROKER_PASSWORD"],
        ),
        (
            "NATS: wrong password under the MQTT_* names",
            vec![
                ("BROKER", &plain),
                ("MQTT_USERNAME", USER),
                ("MQTT_PASSWORD", "wrong-Zq8x-secret"),
            ],
            vec!["rejected the credentials"],
        ),
        (
            "NATS: no credentials",
            vec![("BROKER", &plain)],
            vec!["rejected the credentials", "Authorization Violation"],
        ),
        (
            "NATS: untrusted server certificate",
            vec![("BROKER", &tls_url)],
            vec!["certificate", "TLS_CA_FILE"],
        ),
        (
            "NATS: the server requires TLS",
            vec![("BROKER", &tls_as_plain)],
            vec!["requires TLS", "tls://"],
        ),
        (
            "NATS: no client certificate for mutual TLS",
            vec![("BROKER", &mtls), ("TLS_CA_FILE", ca)],
            vec!["TLS", "TLS_CERT_FILE"],
        ),
    ];
    for (name, mut env, says) in cases {
        env.push(("CONNECT_RETRY_MS", "30000"));
        expect_exit_3(bin, name, &env, &says, fast);
    }
    let nobody = format!("nats://127.0.0.1:{}", free_port());
    let took = expect_exit_3(
        bin,
        "NATS: unreachable server",
        &[("BROKER", &nobody), ("CONNECT_RETRY_MS", "1500")],
        &["CONNECT_RETRY_MS", "refused"],
        Duration::from_millis(1500 + 1000),
    );
    assert!(
        took >= Duration::from_millis(1500),
        "gave up after {took:?}"
    );
}

/// One bad setting: the environment on top of `BROKER=nats://...`, the variable the error must
/// name, and the text it must show.
pub type BadSetting<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

/// Settings that cannot work over NATS: each exits 2 with one line naming the variable and
/// showing the value.
pub fn settings_exit_2(bin: &Path, cases: &[BadSetting<'_>]) {
    for (env, var, shown) in cases {
        let out = std::process::Command::new(bin)
            .env("BROKER", "nats://127.0.0.1:4222")
            .env("METRICS_PORT", "0")
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(var) && err.contains(shown), "{env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}
