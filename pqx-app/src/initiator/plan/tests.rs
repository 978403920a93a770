use serde_json::json;

use super::*;
use crate::initiator::survey::{ExchangeState, QueueState};
use pqx::mq::retry_binding_arguments;

const INIT: &str = "header_exchange: pqx\ndead_message_ttl: 43200000\nheader_queues:\n  - queue: h1\n    kv: { unique_key: h1 }\n  - queue: h2\n    match_type: all\n    kv: { unique_key: h2, zone: eu }\n";

const ALL: Scope = Scope {
    dead_letters: true,
    headers: true,
    delayed: true,
    own_retries: false,
};

fn init() -> InitConfig {
    serde_yaml::from_str(INIT).unwrap()
}

fn exchange_state(kind: &str, durable: bool, arguments: Value) -> ExchangeState {
    ExchangeState {
        kind: Some(kind.into()),
        durable: Some(durable),
        arguments: arguments.as_object().cloned().unwrap_or_default(),
    }
}

fn queue_state(durable: bool, arguments: Value) -> QueueState {
    QueueState {
        durable: Some(durable),
        arguments: arguments.as_object().cloned(),
    }
}

/// A broker as the original PQX lays it out, with the delayed-message plugin loaded.
fn original() -> Existing {
    let mut existing = Existing {
        delayed_plugin: Some(true),
        ..Existing::default()
    };
    let x = &mut existing.exchanges;
    x.insert("pqx".into(), exchange_state("headers", false, json!({})));
    x.insert("pqx.dlx".into(), exchange_state("direct", false, json!({})));
    let delayed = json!({"x-delayed-type": "headers"});
    x.insert(
        "pqx.delayed".into(),
        exchange_state("x-delayed-message", false, delayed),
    );
    let host = json!({"x-dead-letter-exchange": "pqx.dlx", "x-dead-routing-key": ""});
    for q in ["h1", "h2"] {
        existing
            .queues
            .insert(q.into(), queue_state(false, host.clone()));
    }
    let dlq = json!({"x-message-ttl": 43200000});
    existing
        .queues
        .insert("pqx.dlq".into(), queue_state(false, dlq));
    existing
}

fn steps(plan: &Plan) -> Vec<&Step> {
    plan.parts.iter().flat_map(|p| &p.steps).collect()
}

fn lines(plan: &Plan) -> Vec<&str> {
    plan.parts.iter().map(|p| p.line.as_str()).collect()
}

#[test]
fn a_fresh_broker_without_the_plugin_gets_pqx_layout_and_a_queue_for_original_retries() {
    let plan = plan(&init(), &Existing::default(), ALL);
    assert!(plan.conflicts.is_empty() && plan.differences.is_empty());
    let kinds: Vec<(&str, ExchangeType)> = steps(&plan)
        .into_iter()
        .filter_map(|s| match s {
            Step::Exchange { name, kind } => Some((name.as_str(), *kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("pqx.dlx", ExchangeType::Fanout),
            ("pqx", ExchangeType::Headers),
            ("h1.retry", ExchangeType::Direct),
            ("h2.retry", ExchangeType::Direct),
            ("pqx.reply", ExchangeType::Direct),
            ("pqx.output", ExchangeType::Topic),
            ("pqx.delayed", ExchangeType::Direct)
        ]
    );
    assert_eq!(
        lines(&plan),
        [
            "exchange pqx.dlx (fanout) -> queue pqx.dlq (dead letters kept 12h)",
            "exchange pqx (headers)",
            "queue h1 bound to pqx (x-match any: unique_key=h1)",
            "exchange h1.retry (direct) -> queue h1 (its retries)",
            "queue h2 bound to pqx (x-match all: unique_key=h2, zone=eu)",
            "exchange h2.retry (direct) -> queue h2 (its retries)",
            "exchange pqx.reply (direct) for results (reply_to, publisher --wait)",
            "exchange pqx.output (topic) for output lines (inspector show --follow)",
            "exchange pqx.delayed (direct) -> queue pqx.delayed.original-retries (an original PQX subscriber's retries wait 10s there, then go to pqx again)",
        ]
    );
    // Each host queue is bound to its own retry exchange by its name, and by nothing else.
    assert!(steps(&plan).contains(&&bind_by("h2", "h2.retry", "h2")));
}

#[test]
fn a_fresh_broker_with_the_plugin_gets_no_plugin_exchange_but_an_original_layout_keeps_its_own() {
    let with_plugin = Existing {
        delayed_plugin: Some(true),
        ..Existing::default()
    };
    let fresh = plan(&init(), &with_plugin, ALL);
    assert_eq!(
        fresh.parts.last().unwrap().steps[0],
        Step::Exchange {
            name: "pqx.delayed".into(),
            kind: ExchangeType::Direct
        }
    );
    let adopted = plan(&init(), &original(), ALL);
    let delayed = adopted.parts.last().unwrap();
    // Each host queue: by its pairs (the original's subscribers) and by its name (pqx's).
    assert_eq!(delayed.steps.len(), 2 * 2);
    assert!(delayed
        .steps
        .contains(&bind("h2", "pqx.delayed", retry_binding_arguments("h2"))));
    assert_eq!(
        delayed.line,
        "exchange pqx.delayed (x-delayed-message, headers): retries come back through it to h1, h2"
    );
}

/// Whether `step` binds, or declares what the original PQX has no counterpart of (the reply
/// exchange).
fn binds_or_adds_the_reply_exchange(step: &Step) -> bool {
    match step {
        Step::Bind { .. } => true,
        Step::Exchange { name, kind } => {
            (name == "pqx.reply" && *kind == ExchangeType::Direct)
                || (name == "pqx.output" && *kind == ExchangeType::Topic)
        }
        Step::Queue { .. } => false,
    }
}

#[test]
fn the_original_layout_is_adopted_with_one_line_per_difference_and_only_bindings_added() {
    let plan = plan(&init(), &original(), ALL);
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    assert!(
        steps(&plan)
            .iter()
            .all(|s| binds_or_adds_the_reply_exchange(s)),
        "nothing that exists is declared again, and pqx's retries keep going through the plugin's exchange (no retry exchange per queue): {:?}",
        steps(&plan)
    );
    let differences = plan.differences.join("\n");
    for expected in [
        "exchange pqx: not durable (as the original PQX declares it): pqx works with it",
        "exchange pqx.dlx: direct, not fanout (as the original PQX declares it): pqx works with it, binding pqx.dlq by '' and by each host queue's name, the routing keys dead letters carry",
        "queue h1: x-dead-routing-key (the original PQX's misspelling of x-dead-letter-routing-key), which RabbitMQ ignores: pqx works with it",
        "queue h2: no x-max-priority: pqx works with it, but commands run in the order they came, whatever their priority",
        "exchange pqx.delayed: not durable",
    ] {
        assert!(differences.contains(expected), "{expected}\nin:\n{differences}");
    }
    // Durability of 6 objects, priorities and the misspelled key of 2 queues, the direct DLX.
    assert_eq!(plan.differences.len(), 6 + 2 + 2 + 1, "{differences}");
    assert_eq!(
        lines(&plan)[0],
        "exchange pqx.dlx (direct) -> queue pqx.dlq (dead letters kept 12h)"
    );
    let keys: Vec<&str> = plan.parts[0]
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Bind { routing_key, .. } => Some(routing_key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, ["", "h1", "h2"]);
}

#[test]
fn an_exchange_of_a_type_pqx_cannot_use_stops_everything() {
    let mut existing = original();
    let topic = exchange_state("topic", true, json!({}));
    existing.exchanges.insert("pqx".into(), topic);
    let fanout = exchange_state("headers", true, json!({}));
    existing.exchanges.insert("pqx.dlx".into(), fanout);
    let plan = plan(&init(), &existing, ALL);
    assert_eq!(
        plan.conflicts,
        [
            "exchange pqx.dlx: headers, not fanout: dead letters would not reach pqx.dlq",
            "exchange pqx: topic, not headers: commands could not reach their hosts by their pairs",
        ]
    );
}

#[test]
fn without_the_plugin_a_delayed_message_exchange_is_left_and_said_so() {
    let mut existing = original();
    existing.delayed_plugin = Some(false);
    let plan = plan(&init(), &existing, ALL);
    assert!(plan.differences.iter().any(|d| d.starts_with(
        "exchange pqx.delayed: x-delayed-message, but the delayed-message plugin is not loaded"
    )));
    assert!(plan.parts.last().unwrap().steps.is_empty());
}

#[test]
fn decl_dx_alone_binds_only_the_queues_that_exist() {
    let mut existing = original();
    existing.queues.remove("h2");
    let scope = Scope {
        dead_letters: false,
        headers: false,
        delayed: true,
        own_retries: false,
    };
    let plan = plan(&init(), &existing, scope);
    assert_eq!(
        lines(&plan),
        ["exchange pqx.delayed (x-delayed-message, headers): retries come back through it to h1\nqueues not declared yet, so not bound to pqx.delayed: h2 (run `initiator -o decl_x`, then `-o decl_dx`)"]
    );
}

#[test]
fn without_the_management_api_what_exists_is_kept_unchecked() {
    let mut existing = Existing::default();
    for name in ["pqx", "pqx.dlx", "pqx.delayed"] {
        existing
            .exchanges
            .insert(name.into(), ExchangeState::default());
    }
    for name in ["h1", "h2", "pqx.dlq"] {
        existing.queues.insert(name.into(), QueueState::default());
    }
    for name in ["h1.retry", "h2.retry", "pqx.reply", "pqx.output"] {
        existing
            .exchanges
            .insert(name.into(), ExchangeState::default());
    }
    let plan = plan(&init(), &existing, ALL);
    assert!(plan.conflicts.is_empty());
    assert_eq!(plan.differences.len(), 1, "{:?}", plan.differences);
    assert!(steps(&plan).iter().all(|s| matches!(s, Step::Bind { .. })));
    assert_eq!(
        lines(&plan)[0],
        "exchange pqx.dlx (declared before) -> queue pqx.dlq (as declared before)"
    );
}
