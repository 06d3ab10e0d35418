//! Fleet reports: `make k8s-report` (scripts/k8s-report.sh) collects every loadgen pod's
//! `/report` through the API server and merges them. There is no cluster here: a stand-in
//! `kubectl` answers the two calls the script makes (list the pods, read a pod's /report via
//! the pod proxy), logs them, and serves sample reports; the merge is the real binary's.

mod report_samples;

use loadgen::reporting::{hist, LoadedReport};
use report_samples::{simulate, Run};
use rr_common::stats::Summary;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const FAKE_KUBECTL: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
[ "$1" = -n ] || exit 64
ns=$2; shift 2
if [ "$1 $2" = "get pods" ]; then
  [ "$3 $4" = "-l app.kubernetes.io/name=loadgen" ] || exit 65
  printf 'loadgen-0\nloadgen-1\nloadgen-2\n'; exit 0
fi
if [ "$1 $2" = "get --raw" ]; then
  case "$3" in
    /api/v1/namespaces/$ns/pods/*:8090/proxy/report) ;;
    *) echo "unexpected path $3" >&2; exit 66 ;;
  esac
  pod=${3#*/pods/}; pod=${pod%%:*}
  cat "$FAKE_DIR/$pod.json"; exit $?
fi
exit 67
"#;

#[test]
fn k8s_report_collects_every_pod_through_the_api_server_and_merges_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("kubectl");
    std::fs::write(&bin, FAKE_KUBECTL).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut all = hist::empty();
    let mut sent = 0;
    for (i, pod) in ["loadgen-0", "loadgen-1", "loadgen-2"]
        .into_iter()
        .enumerate()
    {
        let s = simulate(&Run {
            instance: pod,
            seed: 11 + i as u64,
            base_us: 600 + 300 * i as u64,
            ..Run::default()
        });
        hist::merge_into(&mut all, &s.latency);
        sent += s.report["sent"].as_u64().unwrap();
        std::fs::write(dir.path().join(format!("{pod}.json")), s.report.to_string()).unwrap();
    }
    let out = dir.path().join("out");
    let log = dir.path().join("calls.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-report.sh");
    let run = Command::new("bash")
        .arg(&script)
        .env("KUBECTL", &bin)
        .env("K8S_NAMESPACE", "bench-ns")
        .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_loadgen"))
        .env("OUT", &out)
        .env("FAKE_DIR", dir.path())
        .env("FAKE_LOG", &log)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{text}");
    assert!(
        text.contains("3 pods") && text.contains("report.html"),
        "{text}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("get --raw /api/v1/namespaces/bench-ns/pods/loadgen-2:8090/proxy/report"),
        "{calls}"
    );
    let merged = LoadedReport::from_file(&out.join("merged.json")).unwrap();
    assert_eq!(merged.u64("sent"), sent);
    assert_eq!(Summary::of(&merged.latency), Summary::of(&all));
    assert_eq!(merged.value["instances"].as_array().unwrap().len(), 3);
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("fleet(3): loadgen-0, loadgen-1, loadgen-2"));

    // no pods: a clear failure, not an empty report
    std::fs::write(&bin, "#!/usr/bin/env bash\nexit 0\n").unwrap();
    let run = Command::new("bash")
        .arg(&script)
        .env("KUBECTL", &bin)
        .env("LOADGEN_BIN", env!("CARGO_BIN_EXE_loadgen"))
        .env("OUT", &out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no running pod matches"));
}
