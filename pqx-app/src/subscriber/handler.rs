//! What a subscriber does with one delivery, in steps: decode it ([`Incoming`]), plan from the
//! records ([`plan`]), run it while its start is recorded, record how it ended ([`hold`] while the
//! database is away), and settle it ([`Settlement`]). A delivery is never acknowledged before its
//! record is committed; a stopping subscriber hands it back to the queue.

use lapin::message::Delivery;
use pqx::exec::{execute, CancellationToken, OutputStream, RunEnd, Settings};
use tracing::{error, info, warn};

use super::hold::{hold, Held};
use super::incoming::{Envelope, Ids, Incoming, Poison};
use super::lines;
use super::plan::{plan, Answers, Plan, Questions};
use super::reply::Replier;
use super::settle::{within_broker_answer, Outbound, Settlement, Settler};
use super::trust::{Recorded, Refusal, Trust};

/// The attempts the records hold, as the trust checks read them.
fn recorded(history: &[(u32, Option<i32>)]) -> Vec<Recorded> {
    history
        .iter()
        .map(|&(attempt, exit_code)| Recorded { attempt, exit_code })
        .collect()
}
use crate::{AttemptStart, Command, Gate, Outcome, Records, Refused};

/// Runs the deliveries of one host queue.
#[derive(Debug)]
pub struct Handler {
    records: Records,
    settings: Settings,
    settler: Settler,
    replier: Replier,
    /// The keys this subscriber trusts; none: it runs unsigned commands.
    trust: Option<Trust>,
}

/// What a delivery comes to: how it is settled and, when its attempt ended, how.
struct Verdict {
    settlement: Settlement,
    outcome: Option<Outcome>,
}

impl Verdict {
    /// Back to the queue, with nothing recorded to report.
    fn requeue() -> Self {
        Self {
            settlement: Settlement::Requeue,
            outcome: None,
        }
    }

    /// Settled so, with nothing recorded to report.
    fn settled(settlement: Settlement) -> Self {
        Self {
            settlement,
            outcome: None,
        }
    }
}

impl Settlement {
    /// What a held record operation that did not succeed comes to: the subscriber is stopping
    /// (back to the queue), or the database refuses the data (to the dead letters: holding it
    /// would stall the queue for ever).
    fn unless_done<T>(held: Held<T>, what: &str) -> Result<T, Self> {
        match held {
            Held::Done(value) => Ok(value),
            Held::Stopped => Err(Settlement::Requeue),
            Held::Refused(e) => Err(Settlement::DeadLetter(format!("cannot {what}: {e}"))),
        }
    }
}

/// How often the records are asked, while a command runs, whether its message was cancelled.
const CANCEL_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a redelivery waits for the result of a twin still running elsewhere, and how often
/// it asks the records meanwhile.
const TWIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const TWIN_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Handler {
    /// A handler for `settler.queue` that keeps its `records` and runs commands with this
    /// machine's `settings`.
    pub fn new(records: Records, settler: Settler, settings: Settings) -> Self {
        let replier = Replier {
            queue: settler.queue.clone(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
        };
        Self {
            records,
            settings,
            settler,
            replier,
            trust: None,
        }
    }

    /// Where its records go.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Runs only what `trust` lets through.
    pub fn with_trust(mut self, trust: Option<Trust>) -> Self {
        self.trust = trust;
        self
    }

    /// Handles one delivery to the end; every outcome is logged, none is returned. `cancel` stops a
    /// running command (the subscriber is stopping): the delivery then goes back to the queue.
    pub async fn handle(
        &self,
        delivery: Delivery,
        outbound: &Outbound,
        cancel: &CancellationToken,
    ) {
        let decoded = Incoming::decode(&delivery, self.trust.as_ref());
        let (envelope, reply_to) = match &decoded {
            Ok(incoming) => (&incoming.envelope, incoming.reply_to()),
            Err(rejected) => (&rejected.envelope, rejected.envelope.reply_to.as_deref()),
        };
        let ids = Ids {
            queue: &self.settler.queue,
            message_id: envelope.message_id.as_deref(),
        };
        let verdict = match &decoded {
            Ok(incoming) => {
                self.decide(incoming, &delivery, ids, outbound, cancel)
                    .await
            }
            Err(rejected) => match &rejected.reason {
                Poison::Refused(refusal) => {
                    let refused = self.refused_of(rejected.command.as_ref(), &delivery, envelope);
                    self.refuse(refusal, refused, ids, cancel).await
                }
                reason => reject(reason, ids),
            },
        };
        if let (true, Some(to), Some(outcome)) =
            (verdict.settlement.is_final(), reply_to, &verdict.outcome)
        {
            let sending = self.replier.send(outbound, to, envelope, ids, outcome);
            within_broker_answer(outbound, ids, "sending its result", sending).await;
        }
        let settlement = verdict.settlement;
        self.settler
            .apply(outbound, &delivery, ids, settlement)
            .await;
    }

    /// Plans from the records, then settles from the record, refuses, skips or runs.
    async fn decide(
        &self,
        incoming: &Incoming,
        delivery: &Delivery,
        ids: Ids<'_>,
        outbound: &Outbound,
        cancel: &CancellationToken,
    ) -> Verdict {
        let answers = match self.look_up(incoming, ids, cancel).await {
            Ok(answers) => answers,
            Err(settlement) => return Verdict::settled(settlement),
        };
        if !answers.settled() {
            if incoming.seal.is_none() && answers.succeeded_before.is_none() {
                return self.start(incoming, ids, outbound, cancel).await;
            }
            if let Some(verdict) = self.unless_cancelled(incoming, ids, cancel).await {
                return verdict;
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        if let (Some(trust), Some(seal), false) = (&self.trust, &incoming.seal, answers.settled()) {
            if !trust.is_fresh(seal, now) {
                let envelope = &incoming.envelope;
                if let Err(refusal) =
                    trust.check_records(envelope, seal, &recorded(&answers.history), now)
                {
                    let refused = self.refused_of(Some(&incoming.command), delivery, envelope);
                    return self.refuse(&refusal, refused, ids, cancel).await;
                }
            }
        }
        match plan(answers) {
            Plan::FromRecord(result) => {
                let (queue, message_id) = (ids.queue, ids.message_id);
                let attempt = incoming.envelope.attempt;
                info!(queue, message_id, attempt, "redelivered, but this attempt is already recorded: settling it from the record");
                let mut verdict = self.verdict(incoming, ids, Outcome::from_record(result));
                // Its retry may have been published before the ack was lost: the next attempt
                // runs once all the same.
                if let Settlement::Retry(next) = &mut verdict.settlement {
                    next.again = true;
                }
                verdict
            }
            Plan::Duplicate => {
                let (queue, message_id) = (ids.queue, ids.message_id);
                let attempt = incoming.envelope.attempt;
                info!(
                    queue,
                    message_id,
                    attempt,
                    "a copy the publisher sent again, of an attempt already here: dropped"
                );
                Verdict::settled(Settlement::Ack)
            }
            Plan::Skip { earlier } => self.skip(incoming, earlier, ids, cancel).await,
            Plan::Run if incoming.seal.is_some() => {
                self.run_signed(incoming, delivery, ids, outbound, cancel)
                    .await
            }
            Plan::Run => self.run(incoming, ids, outbound, cancel, None).await,
        }
    }

    /// Records the start of a signed command unless it ran here before, then runs it; what ran
    /// before is refused.
    async fn run_signed(
        &self,
        incoming: &Incoming,
        delivery: &Delivery,
        ids: Ids<'_>,
        outbound: &Outbound,
        cancel: &CancellationToken,
    ) -> Verdict {
        let start = self.start_of(incoming);
        let redelivered = incoming.envelope.redelivered;
        let what = "record the attempt";
        let record = || self.records.record_start_unless_ran(&start, redelivered);
        match Settlement::unless_done(hold(ids, what, cancel, record).await, what) {
            Ok(Some(history_id)) => {
                self.run(incoming, ids, outbound, cancel, Some(history_id))
                    .await
            }
            Ok(None) => {
                let refusal = self.why_it_ran(incoming, ids, cancel).await;
                let refused =
                    self.refused_of(Some(&incoming.command), delivery, &incoming.envelope);
                self.refuse(&refusal, refused, ids, cancel).await
            }
            Err(settlement) => Verdict::settled(settlement),
        }
    }

    /// Records the start of an unsigned command that is to run, unless its message was
    /// cancelled, then runs it; one statement asks the one and records the other.
    async fn start(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        outbound: &Outbound,
        cancel: &CancellationToken,
    ) -> Verdict {
        let start = self.start_of(incoming);
        let what = "record the attempt";
        let gate = || self.records.record_start_unless_cancelled(&start);
        match Settlement::unless_done(hold(ids, what, cancel, gate).await, what) {
            Ok(Gate::Recorded(id)) => self.run(incoming, ids, outbound, cancel, Some(id)).await,
            Ok(Gate::Open) => self.run(incoming, ids, outbound, cancel, None).await,
            Ok(Gate::Cancelled(at)) => self.not_run(incoming, ids, cancel, at).await,
            Err(settlement) => Verdict::settled(settlement),
        }
    }

    /// A cancelled message's verdict: recorded as not run and acknowledged, no retry. None when
    /// it was not cancelled.
    async fn unless_cancelled(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> Option<Verdict> {
        let id = ids.message_id?;
        let what = "look up whether the message was cancelled";
        let found = || self.records.cancelled(id, ids.queue);
        match Settlement::unless_done(hold(ids, what, cancel, found).await, what) {
            Ok(at) => Some(self.not_run(incoming, ids, cancel, at?).await),
            Err(settlement) => Some(Verdict::settled(settlement)),
        }
    }

    /// Records a message cancelled at `at` as not run; acknowledged, no retry.
    async fn not_run(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        cancel: &CancellationToken,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Verdict {
        let outcome = Outcome::cancelled(at, None);
        let what = "record the cancelled attempt";
        if let Err(verdict) = self
            .record_not_run(incoming, ids, cancel, &outcome, what)
            .await
        {
            return verdict;
        }
        let (queue, message_id) = (ids.queue, ids.message_id);
        info!(queue, message_id, "cancelled: not run");
        Verdict {
            settlement: Settlement::Ack,
            outcome: Some(outcome),
        }
    }

    /// Records an attempt that was not run with how it ended, holding while the database is
    /// away; the verdict when that did not succeed.
    async fn record_not_run(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        cancel: &CancellationToken,
        outcome: &Outcome,
        what: &str,
    ) -> Result<(), Verdict> {
        let start = self.start_of(incoming);
        let record = || self.records.record_not_run(&start, outcome);
        Settlement::unless_done(hold(ids, what, cancel, record).await, what)
            .map_err(Verdict::settled)
    }

    /// Why a signed command's start was not recorded: what the records hold of it here.
    async fn why_it_ran(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> Refusal {
        let envelope = &incoming.envelope;
        let replay = Refusal::Replayed {
            attempt: envelope.attempt,
            queue: ids.queue.to_owned(),
        };
        let (Some(trust), Some(seal), Some(id)) = (&self.trust, &incoming.seal, ids.message_id)
        else {
            return replay;
        };
        let what = "look up the attempts of the message";
        let found = || self.records.attempts_here(id, ids.queue);
        let Held::Done(history) = hold(ids, what, cancel, found).await else {
            return replay;
        };
        let now = chrono::Utc::now().timestamp_millis();
        match trust.check_records(envelope, seal, &recorded(&history), now) {
            Err(refusal) => refusal,
            Ok(()) => replay,
        }
    }

    /// The result of a redelivered attempt that another subscriber started and may still be
    /// running: a subscriber whose connection was lost lets its commands finish and records them,
    /// while the broker hands their messages to the next subscriber at once. Waits for that
    /// result for up to [`TWIN_WAIT`], so that a short command is not run a second time; after
    /// that (a subscriber killed mid-run records nothing) it runs, as at-least-once allows.
    async fn twin_result(
        &self,
        id: &str,
        attempt: u32,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<crate::entities::message_result::Model>, Settlement> {
        let what = "look up the attempts of the message";
        let recorded = || self.records.attempts_here(id, ids.queue);
        let history = Settlement::unless_done(hold(ids, what, cancel, recorded).await, what)?;
        if !history
            .iter()
            .any(|&(a, code)| a == attempt && code.is_none())
        {
            return Ok(None);
        }
        let (queue, message_id) = (ids.queue, ids.message_id);
        info!(queue, message_id, attempt, "redelivered while its start is recorded without a result: waiting for the subscriber that may still run it");
        let until = tokio::time::Instant::now() + TWIN_WAIT;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = tokio::time::sleep(TWIN_EVERY) => {}
                _ = cancel.cancelled() => return Err(Settlement::Requeue),
            }
            let what = "look up the attempt";
            let ended = || self.records.ended_attempt(id, ids.queue, attempt);
            if let Some(result) =
                Settlement::unless_done(hold(ids, what, cancel, ended).await, what)?
            {
                return Ok(Some(result));
            }
        }
        Ok(None)
    }

    /// Asks the records what the plan needs.
    async fn look_up(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> Result<Answers, Settlement> {
        let questions = Questions::of(incoming);
        let mut answers = Answers::default();
        if let Some((id, attempt)) = questions.ended {
            let what = "look up the attempt";
            let ended = || self.records.ended_attempt(id, ids.queue, attempt);
            answers.ended = Settlement::unless_done(hold(ids, what, cancel, ended).await, what)?;
            if answers.ended.is_none() {
                answers.ended = self.twin_result(id, attempt, ids, cancel).await?;
            }
        }
        if let (false, Some((id, attempt))) = (answers.settled(), questions.again) {
            let what = "look up the attempts of the message";
            let recorded = || self.records.attempts_here(id, ids.queue);
            let held = hold(ids, what, cancel, recorded).await;
            let history = Settlement::unless_done(held, what)?;
            answers.ran_here = history.iter().any(|&(a, _)| a >= attempt);
        }
        // A fresh signature needs no look-up: running it again is refused as its start is
        // recorded. An old one is taken only as a retry or redelivery of what ran here.
        let old_seal = match (&self.trust, &incoming.seal) {
            (Some(trust), Some(seal)) => {
                !trust.is_fresh(seal, chrono::Utc::now().timestamp_millis())
            }
            _ => false,
        };
        if let (false, true, Some(id)) = (answers.settled(), old_seal, questions.history) {
            let what = "look up the attempts of the message";
            let recorded = || self.records.attempts_here(id, ids.queue);
            let held = hold(ids, what, cancel, recorded).await;
            answers.history = Settlement::unless_done(held, what)?;
        }
        if let (false, Some(key)) = (answers.settled(), questions.dedupe_key) {
            let what = "look up the dedupe key";
            let earlier = || self.records.succeeded_before(ids.queue, key);
            let held = hold(ids, what, cancel, earlier).await;
            answers.succeeded_before = Settlement::unless_done(held, what)?;
        }
        Ok(answers)
    }

    /// Records the command as skipped, because attempt `earlier` already succeeded with its key.
    async fn skip(
        &self,
        incoming: &Incoming,
        earlier: i64,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> Verdict {
        let key = incoming
            .command
            .config
            .dedupe_key
            .as_deref()
            .unwrap_or_default();
        let outcome = Outcome::skipped(key, ids.queue, earlier);
        let what = "record the skipped attempt";
        if let Err(verdict) = self
            .record_not_run(incoming, ids, cancel, &outcome, what)
            .await
        {
            return verdict;
        }
        let (queue, message_id) = (ids.queue, ids.message_id);
        info!(
            queue,
            message_id,
            dedupe_key = key,
            earlier,
            "already succeeded here: skipped"
        );
        Verdict {
            settlement: Settlement::Ack,
            outcome: Some(outcome),
        }
    }

    /// Runs the command while its start is recorded (unless it is already, as `history_id`), then
    /// records how it ended.
    async fn run(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        outbound: &Outbound,
        cancel: &CancellationToken,
        history_id: Option<i64>,
    ) -> Verdict {
        let (queue, message_id) = (ids.queue, ids.message_id);
        let command = &incoming.command;
        let attempt = incoming.envelope.attempt;
        info!(
            queue,
            message_id,
            attempt,
            cmd = command.cmd.kind(),
            "running"
        );
        let start = self.start_of(incoming);
        // Recorded already, with the look-up for a cancel; else (the recorders behind the broker)
        // while the command starts, so that their round trip is not on the way from delivery to
        // run. Either way both are done before the delivery is settled.
        let recording = async {
            match history_id {
                Some(id) => Held::Done(id),
                None => {
                    let record = || self.records.record_start(&start);
                    hold(ids, "record the attempt", cancel, record).await
                }
            }
        };
        let timeout = command.config.run_timeout();
        let key = message_id.map(|id| lines::routing_key(id, queue));
        let followers = lines::stream(outbound.lines.as_ref(), key, attempt);
        let on_line = move |stream: OutputStream, line: &str| {
            if let Some(followers) = &followers {
                // As printed: whoever follows escapes it for where it shows it.
                let _ = followers.try_send((stream, line.to_owned()));
            }
            // What a command prints must not rewrite the terminal or log of whoever reads it.
            let line = pqx_util::escape_control(line);
            info!(queue, message_id, stream = stream.as_str(), "{line}");
        };
        // Killed when the subscriber stops, or when an operator cancels this message.
        let this_one = cancel.child_token();
        let running = self.run_unless_cancelled(
            execute(&command.cmd, &self.settings, timeout, &this_one, on_line),
            ids,
            &this_one,
        );
        // The run is polled first, so that the process is spawned before the insert is prepared.
        let ((report, cancelled_at), started) = tokio::join!(running, recording);
        self.ran(incoming, ids, cancel, report, cancelled_at, started)
            .await
    }

    /// Records how a run ended, given how its start was recorded, and says what becomes of it.
    async fn ran(
        &self,
        incoming: &Incoming,
        ids: Ids<'_>,
        cancel: &CancellationToken,
        report: pqx::exec::RunReport,
        cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
        started: Held<i64>,
    ) -> Verdict {
        let (queue, message_id) = (ids.queue, ids.message_id);
        let attempt = incoming.envelope.attempt;
        let outcome = match cancelled_at {
            Some(at) => Outcome::cancelled(at, Some(&report)),
            None => Outcome::of_run(&report),
        };
        let history_id = match started {
            Held::Done(id) => id,
            Held::Stopped => return Verdict::requeue(),
            // It ran: running it again would not mend the record.
            Held::Refused(e) => {
                return Verdict {
                    settlement: Settlement::DeadLetter(format!(
                        "ran, but its start cannot be recorded: {e}"
                    )),
                    outcome: Some(outcome),
                }
            }
        };
        let exit_code = outcome.exit_code;
        let summary = pqx_util::escape_control(&outcome.summary);
        info!(queue, message_id, attempt, exit_code, "{summary}");
        if cancelled_at.is_some() {
            // No retry, no dead letter: the operator asked for it to stop.
            if !self.record_end(history_id, &outcome, ids, cancel).await {
                return Verdict::requeue();
            }
            return Verdict {
                settlement: Settlement::Ack,
                outcome: Some(outcome),
            };
        }
        if report.end == RunEnd::Interrupted {
            // Stopping: one try at the record, then the message goes back to run again elsewhere.
            if let Err(e) = self.records.record_end(history_id, &outcome).await {
                warn!(queue, message_id, error = %e, "cannot record the interrupted attempt");
            }
            return Verdict::requeue();
        }
        if !self.record_end(history_id, &outcome, ids, cancel).await {
            return Verdict::requeue();
        }
        self.verdict(incoming, ids, outcome)
    }

    /// Runs `running` while asking the records every [`CANCEL_EVERY`] whether its message was
    /// cancelled: if it was, `this_one` is cancelled, which kills the command, and the time of
    /// the cancel comes back with its report.
    async fn run_unless_cancelled(
        &self,
        running: impl std::future::Future<Output = pqx::exec::RunReport>,
        ids: Ids<'_>,
        this_one: &CancellationToken,
    ) -> (pqx::exec::RunReport, Option<chrono::DateTime<chrono::Utc>>) {
        let mut cancelled_at = None;
        let watching = async {
            let Some(id) = ids.message_id else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(CANCEL_EVERY).await;
                // A look-up that fails is asked again at the next turn.
                if let Ok(Some(at)) = self.records.cancelled(id, ids.queue).await {
                    return at;
                }
            }
        };
        tokio::pin!(running, watching);
        loop {
            tokio::select! {
                report = &mut running => return (report, cancelled_at),
                at = &mut watching, if cancelled_at.is_none() => {
                    info!(queue = ids.queue, message_id = ids.message_id, "cancelled: killing it");
                    cancelled_at = Some(at);
                    this_one.cancel();
                }
            }
        }
    }

    /// Records how attempt `history_id` ended, holding while the database is away; false when the
    /// subscriber is stopping first.
    async fn record_end(
        &self,
        history_id: i64,
        outcome: &Outcome,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> bool {
        let record = || self.records.record_end(history_id, outcome);
        match hold(ids, "record the result", cancel, record).await {
            Held::Done(()) => true,
            Held::Stopped => false,
            Held::Refused(e) => {
                self.record_without_output(history_id, outcome, &e, ids)
                    .await;
                true
            }
        }
    }

    /// Records how an attempt ended without what it printed, when the database refuses that: the
    /// attempt then at least has its exit code and summary.
    async fn record_without_output(
        &self,
        history_id: i64,
        outcome: &Outcome,
        refused: &crate::Error,
        ids: Ids<'_>,
    ) {
        let note = format!("[pqx: not stored, the database refused it: {refused}]");
        let plain = Outcome {
            summary: outcome.summary.chars().take(200).collect(),
            stdout: note.clone(),
            stderr: note,
            ..outcome.clone()
        };
        if let Err(e) = self.records.record_end(history_id, &plain).await {
            let (queue, message_id) = (ids.queue, ids.message_id);
            error!(queue, message_id, error = %e, "cannot record the result at all; settling it anyway");
        }
    }

    /// How a recorded attempt is settled, by the command's retry policy.
    fn verdict(&self, incoming: &Incoming, ids: Ids<'_>, outcome: Outcome) -> Verdict {
        let attempt = incoming.envelope.attempt;
        let policy = incoming.command.config.retry_policy();
        let settlement = Settlement::after(&outcome, &policy, attempt);
        if let Settlement::DeadLetter(_) = settlement {
            let (queue, message_id) = (ids.queue, ids.message_id);
            warn!(
                queue,
                message_id, attempt, "no retries left: dead-lettering it"
            );
        }
        Verdict {
            settlement,
            outcome: Some(outcome),
        }
    }

    /// What is recorded of a refused delivery.
    fn refused_of<'a>(
        &'a self,
        command: Option<&'a Command>,
        delivery: &'a Delivery,
        envelope: &'a Envelope,
    ) -> Refused<'a> {
        Refused {
            command,
            body: &delivery.data,
            message_id: envelope.message_id.as_deref(),
            queue: &self.settler.queue,
            host: &self.replier.host,
            attempt: envelope.attempt,
        }
    }

    /// Records a refused command and dead-letters it with the reason; its caller hears nothing
    /// back (where a result goes is the message's word, which is not taken).
    async fn refuse(
        &self,
        refusal: &Refusal,
        refused: Refused<'_>,
        ids: Ids<'_>,
        cancel: &CancellationToken,
    ) -> Verdict {
        let reason = format!("refused: {refusal}");
        let (queue, message_id) = (ids.queue, ids.message_id);
        let shown = pqx_util::escape_control(&reason);
        warn!(queue, message_id, reason = %shown, "not run: dead-lettering it");
        let outcome = Outcome::refused(&refusal.to_string());
        let what = "record the refused command";
        let record = || self.records.record_refused(&refused, &outcome);
        match hold(ids, what, cancel, record).await {
            Held::Done(()) => {}
            Held::Stopped => return Verdict::requeue(),
            Held::Refused(e) => {
                error!(queue, message_id, error = %e, "cannot record the refused command; dead-lettering it anyway")
            }
        }
        Verdict::settled(Settlement::DeadLetter(reason))
    }

    fn start_of<'a>(&'a self, incoming: &'a Incoming) -> AttemptStart<'a> {
        AttemptStart {
            command: &incoming.command,
            message_id: incoming.envelope.message_id.as_deref(),
            queue: &self.settler.queue,
            host: &self.replier.host,
            attempt: incoming.envelope.attempt,
        }
    }
}

/// A message that is not a command goes to the dead letters with the reason.
fn reject(poison: &Poison, ids: Ids<'_>) -> Verdict {
    let reason = poison.to_string();
    let (queue, message_id) = (ids.queue, ids.message_id);
    let shown = pqx_util::escape_control(&reason);
    error!(queue, message_id, reason = %shown, "not a valid command: dead-lettering it");
    Verdict {
        outcome: Some(Outcome::rejected(&reason)),
        settlement: Settlement::DeadLetter(reason),
    }
}
