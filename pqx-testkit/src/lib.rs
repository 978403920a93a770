//! What pqx's integration tests and its benchmark share, so that both set up the same way: a vhost
//! of its own on the real broker ([`Vhost`]), a database of its own ([`TestDb`]), a working
//! directory with conn.yml and init.yml where the binaries run as a user runs them ([`Env`]),
//! subscribers started from them that say when they consume ([`Subscriber`], `--ready-file`), the
//! second broker node that fault tests restart, a TCP proxy that cuts a connection ([`TcpProxy`]),
//! real local peers for the command kinds ([`Sshd`], [`HttpServer`]), hosts of a fleet as network
//! namespaces ([`NetHost`]), and polling with deadlines.
//!
//! Everything returns `anyhow::Result` with context: a test fails with what went wrong, and the
//! benchmark reports it. Everything it makes is removed on drop.

mod broker;
mod cluster;
mod database;
mod env;
mod fleet;
mod names;
mod peers;
mod poll;
mod process;
mod proxy;
mod subscriber;
mod tls;

pub use broker::{mq_host, node2_ctl, node2_name, Broker, Vhost, MAIN, MQ_PASS, MQ_USER, NODE2};
pub use cluster::{
    cluster_ctl, cluster_node, cluster_urls, connected_node, kill_node, leader_of, restore_cluster,
    CLUSTER,
};
pub use database::{pg_admin_url, DbKind, TestDb};
pub use env::Env;
pub use fleet::{Fleet, NetHost, Records, FLEET_GATEWAY};
pub use names::unique;
pub use peers::{free_port, free_ports, HttpServer, Sshd};
pub use poll::Deadline;
pub use process::{
    all_cmdlines, busy_cpu_secs, children_of, process_cpu_secs, pss_kib, rss_kib, threads_cpu_secs,
    threads_switches, wait_gone,
};
pub use proxy::TcpProxy;
pub use subscriber::Subscriber;
pub use tls::{tls_dir, AMQPS_PORT, API_TLS_PORT};
