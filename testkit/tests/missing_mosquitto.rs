//! A missing mosquitto binary is a clear error, not a skip (own test binary: it changes the env).

use rr_testkit::{Mosquitto, MosquittoOptions};

#[test]
fn missing_binary_fails_with_an_install_hint() {
    std::env::set_var("MOSQUITTO_BIN", "/nonexistent/mosquitto");
    assert!(!Mosquitto::available());
    let err = Mosquitto::start(MosquittoOptions::new()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("mosquitto is not installed"), "{msg}");
    assert!(msg.contains("install the `mosquitto` package"), "{msg}");
}
