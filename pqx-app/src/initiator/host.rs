//! `initiator add-host QUEUE --kv K=V ... [--match any|all]`: one more host queue, laid out as
//! init.yml's are (its queue bound to the headers exchange by its pairs, its own retry exchange),
//! without editing init.yml. The publisher routes from the broker's bindings, so commands reach
//! it at once. `rectifier del-host QUEUE` takes it away again.

use std::collections::BTreeMap;

use clap::Args;
use pqx::mq::MatchType;

use crate::{Error, HeaderQueue, InitConfig, Result};

/// What `add-host` is told of the new host.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// With add-host: the host queue (`initiator add-host QUEUE` gives it so too)
    #[arg(long, global = true, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// With add-host: a pair a mailing_to entry must carry to reach it (repeat for more)
    #[arg(long, global = true, value_name = "KEY=VALUE", value_parser = pair)]
    pub kv: Vec<(String, String)>,
    /// With add-host: whether one pair in common is enough (any) or all are needed (all)
    #[arg(long = "match", global = true, value_name = "any|all", default_value = "any", value_parser = ["any", "all"])]
    pub match_type: String,
}

fn pair(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

impl HostArgs {
    /// The host queue asked for, checked against init.yml's as one of them would be.
    pub fn host_queue(&self, init: &InitConfig) -> Result<HeaderQueue> {
        let queue = self.queue.clone().ok_or(Error::AddHostWhich)?;
        if self.kv.is_empty() {
            return Err(Error::AddHostPairs { queue });
        }
        let match_type = match self.match_type.as_str() {
            "all" => MatchType::All,
            _ => MatchType::Any,
        };
        let kv: BTreeMap<String, String> = self.kv.iter().cloned().collect();
        let host = HeaderQueue::new(queue, match_type, kv);
        let mut all = init.clone();
        all.header_queues.retain(|q| q.queue != host.queue);
        all.header_queues.push(host.clone());
        all.validate().map_err(|source| Error::AddHost {
            queue: host.queue.clone(),
            source,
        })?;
        Ok(host)
    }
}
