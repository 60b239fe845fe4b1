//! boto3's `ec2` client reads what `sallyport-testbed serve` answers: DescribeInstances
//! with its paginator, filters and an error, DescribeInstanceConnectEndpoints
//! (testbed/tests/python/boto3_ec2.py). Python with boto3 comes from
//! `SALLYPORT_BOTO3_PYTHON`, else the venv `.ci/install-deps` makes
//! (`$HOME/.cache/sallyport/venv`), else `python3` if it has boto3; without one the test
//! is skipped, and under `CI=true` it fails naming what to install.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sallyport-testbed");

/// Kills the testbed when the test ends, however it ends.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn has_boto3(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn find_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SALLYPORT_BOTO3_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let venv = home.map(|h| h.join(".cache/sallyport/venv/bin/python3"));
    [venv, Some(PathBuf::from("python3"))]
        .into_iter()
        .flatten()
        .find(|p| has_boto3(p))
}

fn instances_file(dir: &Path) -> PathBuf {
    let mut toml = String::new();
    for n in 0..7 {
        toml.push_str(&format!(
            "[[instance]]\nid = \"i-{n:017x}\"\ntags = {{ Name = \"web-{n}\" }}\n"
        ));
        if n == 1 {
            toml.push_str(
                "ip_address = \"10.0.1.7\"\nipv6_address = \"fd00::7\"\n\
                 vpc_id = \"vpc-00000000000000db0\"\nsubnet_id = \"subnet-00000000000000db0\"\n",
            );
        }
        if n == 2 {
            toml.push_str("ping_status = \"ConnectionLost\"\nec2_state = \"running\"\n");
        }
    }
    toml.push_str(
        "[[instance_connect_endpoint]]\nid = \"eice-0123456789abcdef0\"\n\
         vpc_id = \"vpc-0de1a0170000e1ce0\"\nsubnet_id = \"subnet-0de1a0170000e1ce0\"\n",
    );
    let path = dir.join("instances.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn boto3_reads_the_ec2_answers() {
    let Some(python) = find_python() else {
        let why = "no python3 with boto3 (set SALLYPORT_BOTO3_PYTHON, or run \
                   `bash .ci/install-deps`, which installs python3 and python3-venv and makes \
                   $HOME/.cache/sallyport/venv with boto3 from PyPI)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {why}"
        );
        eprintln!("skipped: {why}");
        return;
    };
    let dir = std::env::temp_dir().join(format!("sallyport-boto3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = instances_file(&dir);
    let mut child = Command::new(BIN)
        .args(["serve", "--instances"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sallyport-testbed serve");
    let stdout = child.stdout.take().unwrap();
    let _serve = Serve(child);
    // serve prints its KEY=VALUE lines, the last being SALLYPORT_TESTBED_EIC_STATE.
    let mut env = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("serve's output");
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let last = k == "SALLYPORT_TESTBED_EIC_STATE";
        env.push((k.to_owned(), v.to_owned()));
        if last {
            break;
        }
    }
    let endpoint = (env.iter())
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .expect("serve printed AWS_ENDPOINT_URL");
    let dns_name = endpoint.trim_start_matches("http://").to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/boto3_ec2.py");
    let out = Command::new(&python)
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().filter(|(k, _)| k.starts_with("AWS_")).cloned())
        .env("EXPECT_DNS_NAME", &dns_name)
        // boto3 reads the region from AWS_DEFAULT_REGION.
        .envs(
            (env.iter())
                .filter(|(k, _)| k == "AWS_REGION")
                .map(|(_, v)| ("AWS_DEFAULT_REGION", v.clone())),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run python");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("OK"),
        "boto3 script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
