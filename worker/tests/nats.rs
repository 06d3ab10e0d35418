//! The worker over NATS against a real nats-server (testkit, free port): (e) any NATS requester
//! (nats-py's `request()`) gets answers, (f) start-up failures exit 3 with one line, the password
//! never printed; settings NATS cannot carry exit 2. (b, two workers in one queue group, one
//! killed, is in worker_loss.rs, for MQTT and NATS alike.)

#[path = "../../loadgen/tests/support/nats.rs"]
mod nats_support;
mod support;
#[path = "../../loadgen/tests/support/tls.rs"]
mod tls;

use nats_support::*;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_nats_py_requester_gets_answers_from_the_worker() {
    let server = nats();
    let url = server.url();
    let (_w, addr) = spawn_worker(&url, &[]);
    wait_ready(&addr).await;
    let mut requester = python("nats_requester.py", &[&url, "req.7", "200"]);
    let status = tokio::task::block_in_place(|| requester.wait_timeout(Duration::from_secs(60)))
        .unwrap()
        .expect("the requester finishes");
    assert!(status.success(), "{}", requester.stderr());
    let out: serde_json::Value =
        serde_json::from_str(requester.stdout().trim()).expect("one JSON line");
    eprintln!("nats-py requester -> worker: {out}");
    assert_eq!(out["answered"], 200, "{out}");
    let s = stats(&addr).await;
    assert_eq!(s["received"], 200, "{s:#}");
    assert_eq!(s["responded"], 200, "{s:#}");
    assert_eq!(s["invalid"], 0, "{s:#}");
}

#[test]
fn f_worker_startup_failures_exit_3_with_one_line() {
    nats_startup_failures(worker_bin());
}

#[test]
fn g_settings_nats_cannot_carry_exit_2_naming_the_variable() {
    settings_exit_2(
        worker_bin(),
        &[
            (&[("MQTT_SUB", "req/ x")], "MQTT_SUB", "req/ x"),
            (&[("MQTT_SUB", "req/#/x")], "MQTT_SUB", "req/#/x"),
            (&[("SHARE_GROUP", "a b")], "SHARE_GROUP", "a b"),
        ],
    );
}
