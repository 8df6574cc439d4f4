//! A real S3-compatible server for the S3 media tests: s3s-fs (verifies SigV4 signatures, header
//! and pre-signed), installed into `.tools/s3s` by `scripts/install-s3s-fs.sh` when missing, started
//! on a free loopback port with random keys over a temporary directory, killed by pid on drop.
//! The tests check the bucket through their own object_store client, not the server's code path.

// Not every suite module uses every helper.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use decentcom::media::S3Credentials;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// The s3s-fs binary, installed once per test process (a failure to install fails the tests).
pub fn s3s_fs_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/install-s3s-fs.sh");
            let output = Command::new("bash")
                .arg(script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
            assert!(output.status.success(), "{script} failed ({}): s3s-fs is needed by the S3 tests", output.status);
            let path = String::from_utf8(output.stdout).unwrap().lines().last().unwrap_or("").trim().to_owned();
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{script} did not produce the s3s-fs binary ({})", path.display());
            path
        })
        .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// A running s3s-fs with one bucket. Dropping it kills the process and removes its data.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts s3s-fs on a free 127.0.0.1 port with random keys and creates the bucket `media`.
    pub async fn start() -> S3Server {
        let binary = s3s_fs_binary();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bucket = "media".to_owned();
        // A bucket is a directory under the data root.
        std::fs::create_dir_all(data.join(&bucket)).unwrap();
        let access_key = format!("AK{}", random_hex(8)).to_uppercase();
        let secret_key = random_hex(20);
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", &access_key, "--secret-key", &secret_key])
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let deadline = Instant::now() + Duration::from_secs(10);
            let ready = loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            if ready {
                return S3Server {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    bucket,
                    access_key,
                    secret_key,
                    child: Some(child),
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start");
    }

    pub fn credentials(&self) -> S3Credentials {
        S3Credentials::new(&self.access_key, &self.secret_key)
    }

    /// An object_store client of our own for `bucket` (checks bypass the server's code).
    pub fn client_for(&self, bucket: &str) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(&self.secret_key)
                .with_region("us-east-1")
                .with_virtual_hosted_style_request(false)
                .build()
                .unwrap(),
        )
    }

    pub fn client(&self) -> Arc<AmazonS3> {
        self.client_for(&self.bucket)
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.client().list(None).map_ok(|meta| meta.location.to_string()).try_collect().await.unwrap();
        keys.sort();
        keys
    }

    /// The bytes of an object (None when it does not exist).
    pub async fn object(&self, key: &str) -> Option<Bytes> {
        match self.client().get(&ObjectPath::from(key)).await {
            Ok(result) => Some(result.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(err) => panic!("reading {key}: {err}"),
        }
    }

    /// Starts the server again after [`S3Server::stop`], on the same port, keys and data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is running");
        let port = self.endpoint.rsplit(':').next().unwrap().to_owned();
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(["--access-key", &self.access_key, "--secret-key", &self.secret_key])
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not restart on port {port}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the server now (by pid): the store becomes unreachable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Files of multipart uploads neither completed nor aborted (s3s-fs keeps the parts of an
    /// upload as `.upload_id-<id>…` files in its data root).
    pub fn pending_multipart_files(&self) -> Vec<String> {
        std::fs::read_dir(self.data_dir())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(".upload_id-"))
            .collect()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
