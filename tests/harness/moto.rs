//! moto server (PyPI `moto[server]`), an emulator that speaks the AWS wire
//! protocols, started on a free loopback port for the AWS adapter tests and
//! stopped when the handle drops. The test command installs it; a machine
//! without it fails the test with a message that says how to install it.

use crate::process::free_port;
use certops_aws::dynamo::aws_sdk_dynamodb;
use certops_aws::dynamo::aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use certops_aws::dynamo::Tables;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Moto {
    /// Starts moto's server on 127.0.0.1 and waits until it answers. It runs through
    /// `tests/python/moto_server_atomic.py`: moto's own application with DynamoDB's
    /// documented atomicity (each conditional write and transaction applied whole), which
    /// moto's threaded server does not give concurrent requests.
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/python/moto_server_atomic.py"
            ))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start moto_server ({e}); install it with \
                     `python3 -m pip install 'moto[server]'` (scripts/test-all.sh does)"
                )
            });
        let moto = Moto { child, port };
        crate::eventually::eventually(
            &format!("moto_server listening on 127.0.0.1:{port}"),
            Duration::from_secs(60),
            || crate::eventually::listening(port).then_some(()),
        );
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SDK configuration pointed at this server: region us-east-1 and
    /// dummy static credentials (moto accepts any), as production code would
    /// get from `aws_config::load_defaults` with `AWS_ENDPOINT_URL` set.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(aws_sdk_sfn::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the three tables of the environment contract (suffixed, one set per case) with
/// TTL enabled on `ttl`.
pub async fn create_contract_tables(client: &aws_sdk_dynamodb::Client, suffix: &str) -> Tables {
    let tables = Tables {
        state: format!("certops-state-{suffix}"),
        approvals: format!("certops-approvals-{suffix}"),
        audit: format!("certops-audit-{suffix}"),
    };
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("key")
    };
    for name in [&tables.state, &tables.approvals] {
        client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk", ScalarAttributeType::S))
            .key_schema(key("pk", KeyType::Hash))
            .send()
            .await
            .expect("create table");
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .expect("enable ttl");
    }
    client
        .create_table()
        .table_name(&tables.audit)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("execution", ScalarAttributeType::S))
        .attribute_definitions(attr("seq", ScalarAttributeType::N))
        .key_schema(key("execution", KeyType::Hash))
        .key_schema(key("seq", KeyType::Range))
        .send()
        .await
        .expect("create audit table");
    tables
}
