//! Small commands a k6 user reaches for: `barrage inspect` (the resolved options as
//! JSON, as `k6 inspect` prints them), `barrage version` and `barrage new` (a starter
//! test that runs).

use crate::cli::{InspectArgs, NewArgs};
use crate::exit;
use crate::load::load;

/// `barrage inspect`: the test's options after the command line's overrides, as JSON
/// with k6's option names (exit 0), or the load error with its exit code.
pub fn inspect_command(args: InspectArgs) -> i32 {
    match load(&args.file) {
        Ok(l) => {
            let options = &l.test.source().options;
            match serde_json::to_string_pretty(options) {
                Ok(text) => {
                    println!("{text}");
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::ERROR
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// `barrage version`: `barrage v0.1.0 (linux/x86_64)`, in `k6 version`'s form.
pub fn version_command() -> i32 {
    println!(
        "barrage v{} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    exit::OK
}

/// The starter YAML test: one HTTP check against `TARGET_URL` (sumflow's Totalizer by
/// default), a threshold, a short constant load.
pub const STARTER_YAML: &str = r#"# A starter Barrage test. Run it with:
#   barrage run script.yaml -e TARGET_URL=http://localhost:8080
# Everything k6 users know applies: scenarios, executors, thresholds, checks.
options:
  scenarios:
    default:
      executor: constant-vus
      vus: 2
      duration: ${DURATION:-5s}
  thresholds:
    http_req_failed: ["rate<0.01"]
    http_req_duration: ["p(95)<500"]

flows:
  default:
    - http:
        url: "${TARGET_URL:-http://localhost:8080}/v1/healthcheck"
        checks: {"status is 200": "status == 200"}
    - sleep: 100ms
"#;

/// The starter k6 script, for a `.js` name.
pub const STARTER_JS: &str = r#"// A starter k6 script; Barrage runs it as k6 does:
//   barrage run script.js -e TARGET_URL=http://localhost:8080
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = {
  vus: 2,
  duration: __ENV.DURATION || '5s',
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(95)<500'],
  },
};

const target = __ENV.TARGET_URL || 'http://localhost:8080';

export default function () {
  const res = http.get(`${target}/v1/healthcheck`);
  check(res, { 'status is 200': (r) => r.status === 200 });
  sleep(0.1);
}
"#;

/// `barrage new [FILE]`: writes a starter test (a k6 script for a `.js` or `.mjs`
/// name); refuses to overwrite a file without `--force`.
pub fn new_command(args: NewArgs) -> i32 {
    if args.file.exists() && !args.force {
        eprintln!(
            "error: {} already exists; use --force to overwrite it",
            args.file.display()
        );
        return exit::ERROR;
    }
    let body = if crate::load::is_script(&args.file) {
        STARTER_JS
    } else {
        STARTER_YAML
    };
    match std::fs::write(&args.file, body) {
        Ok(()) => {
            println!(
                "{} written; run it with: barrage run {}",
                args.file.display(),
                args.file.display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", args.file.display());
            exit::ERROR
        }
    }
}
