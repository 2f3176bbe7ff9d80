//! `data:` sets of a YAML test, through the real binary against a real sumflow and real
//! agent processes: CSV and JSON rows read as `data.NAME`, picked by the iteration
//! (unique over the cluster), by the VU or at random, shipped in the plan (the agents
//! have no files), and every broken data file refused at load naming the file and line.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(90);

/// Six users whose ids are powers of two: the sum of the ids read tells which rows were.
const USERS_CSV: &str = "name,id\nann,1\nbob,2\n\"c, d\",4\ndan,8\neve,16\nfay,32\n";

fn scenario(sut: &Sut, dir: &Path, executor: &str, pick: &str, file: &str) -> PathBuf {
    let path = dir.join("data.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
options:
  scenarios:
    s: {{{executor}, exec: f}}
metrics: {{picked: counter}}
data:
  users: {{file: {file}, pick: {pick}}}
flows:
  f:
    - http:
        url: "{url}/v1/results"
        headers: {{x-user: "{{{{ data.users.name }}}}"}}
        checks: {{"read": "status == 200"}}
    - record: {{picked: "int(data.users.id)"}}
"#,
            url = sut.http_url
        ),
    )
    .unwrap();
    path
}

async fn picked(file: &Path, extra: &[&str]) -> (f64, f64) {
    let results = file.with_file_name("r.json");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = barrage(&args, &[], LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&results);
    (
        value(&s, "picked", "count"),
        value(&s, "iterations", "count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_picked_by_iteration_by_vu_and_at_random() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), USERS_CSV).unwrap();
    // By iteration: six iterations read the six rows once each (1+2+...+32).
    let f = scenario(
        &sut,
        dir.path(),
        "executor: shared-iterations, vus: 2, iterations: 6",
        "iteration",
        "users.csv",
    );
    assert_eq!(picked(&f, &["--workers", "2"]).await, (63.0, 6.0));
    // By VU: three VUs, two iterations each, read rows 1, 2 and 3 twice.
    let f = scenario(
        &sut,
        dir.path(),
        "executor: per-vu-iterations, vus: 3, iterations: 2",
        "vu",
        "users.csv",
    );
    assert_eq!(picked(&f, &[]).await, (14.0, 6.0));
    // At random: any row, each a power of two.
    let f = scenario(
        &sut,
        dir.path(),
        "executor: shared-iterations, vus: 1, iterations: 1",
        "random",
        "users.csv",
    );
    let (sum, _) = picked(&f, &[]).await;
    assert!([1.0, 2.0, 4.0, 8.0, 16.0, 32.0].contains(&sum), "{sum}");
    // A JSON array of objects reads the same; numbers stay numbers.
    std::fs::write(
        dir.path().join("users.json"),
        r#"[{"name": "ann", "id": 1}, {"name": "bob", "id": 2}]"#,
    )
    .unwrap();
    let f = scenario(
        &sut,
        dir.path(),
        "executor: shared-iterations, vus: 1, iterations: 4",
        "iteration",
        "users.json",
    );
    assert_eq!(picked(&f, &[]).await, (6.0, 4.0));
    assert_eq!(sut.http_api_requests().await, 17.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_read_the_rows_shipped_in_the_plan_unique_over_the_cluster() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), USERS_CSV).unwrap();
    let f = scenario(
        &sut,
        dir.path(),
        "executor: shared-iterations, vus: 2, iterations: 6",
        "iteration",
        "users.csv",
    );
    // Agents read no file: they parse the bytes the plan carries (without them an
    // agent refuses the plan, see `DataSets::from_test`).
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let (sum, iterations) = picked(
        &f,
        &["--agent", &agents[0].addr, "--agent", &agents[1].addr],
    )
    .await;
    assert_eq!(iterations, 6.0);
    assert_eq!(sum, 63.0, "each row once over both agents");

    // An archive carries the data file: it runs without the original.
    let tar = dir.path().join("t.tar");
    let out = barrage(
        &["archive", f.to_str().unwrap(), "-O", tar.to_str().unwrap()],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_file(dir.path().join("users.csv")).unwrap();
    assert_eq!(picked(&tar, &[]).await, (63.0, 6.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_data_is_refused_at_load_naming_the_file_and_line() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "missing.csv",
            "",
            &["missing.csv", "data.users.file", "data.yaml:7:"],
        ),
        (
            "bad.csv",
            "name,id\nann,1\nbob\n",
            &["bad.csv", "line 3", "header row has 2"],
        ),
        ("empty.csv", "name,id\n", &["empty.csv", "no rows"]),
        (
            "bad.json",
            "[{\"name\": 1},\n oops]",
            &["bad.json", "line 2"],
        ),
    ];
    for (name, content, want) in cases {
        if !content.is_empty() {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let f = scenario(
            &sut,
            dir.path(),
            "executor: shared-iterations, vus: 1, iterations: 1",
            "iteration",
            name,
        );
        let out = barrage(&["validate", f.to_str().unwrap()], &[], LIMIT).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(104), "{name}: {stderr}");
        for w in want {
            assert!(stderr.contains(w), "{name}: no {w:?} in {stderr}");
        }
    }
    // An expression reading a data set that does not exist.
    std::fs::write(dir.path().join("users.csv"), USERS_CSV).unwrap();
    let f = scenario(
        &sut,
        dir.path(),
        "executor: shared-iterations, vus: 1, iterations: 1",
        "iteration",
        "users.csv",
    );
    let text_in = std::fs::read_to_string(&f)
        .unwrap()
        .replace("int(data.users.id)", "int(data.usres.id)");
    std::fs::write(&f, text_in).unwrap();
    let out = barrage(&["validate", f.to_str().unwrap()], &[], LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(104), "{stderr}");
    assert!(
        stderr.contains("data.yaml:14:") && stderr.contains("no data set is named \"usres\""),
        "{stderr}"
    );
    assert_eq!(sut.http_api_requests().await, 0.0, "no load was sent");
}
