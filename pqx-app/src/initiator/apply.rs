//! Applying a plan: each part's declarations in order, then its line. The plan was checked against
//! the broker as a whole first, so a declaration fails here only if the broker changed meanwhile or
//! refuses the user.

use lapin::Channel;
use pqx::mq::{bind, declare_exchange, declare_queue};
use pqx_util::{escape_control, escape_control_lines};

use super::plan::{Plan, Step};
use crate::Result;

/// Prints each difference pqx works with, then declares each part and prints its line.
pub async fn apply(channel: &Channel, plan: &Plan) -> Result<()> {
    // Names come from init.yml and the broker: shown without control characters.
    for difference in &plan.differences {
        println!("differs: {}", escape_control(difference));
    }
    for note in &plan.notes {
        println!("note: {}", escape_control(note));
    }
    for part in &plan.parts {
        for step in &part.steps {
            declare(channel, step).await?;
        }
        println!("{}", escape_control_lines(&part.line));
    }
    Ok(())
}

async fn declare(channel: &Channel, step: &Step) -> Result<()> {
    match step {
        Step::Exchange { name, kind } => declare_exchange(channel, name, *kind).await?,
        Step::Queue { name, arguments } => declare_queue(channel, name, arguments.clone()).await?,
        Step::Bind {
            queue,
            exchange,
            routing_key,
            arguments,
        } => bind(channel, queue, exchange, routing_key, arguments.clone()).await?,
    }
    Ok(())
}
