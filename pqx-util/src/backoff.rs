//! Waiting longer after each failure: the reconnect loops of the subscriber and publisher and the
//! subscriber's held record writes all wait `first`, then twice as long each time, up to `max`.

use std::time::Duration;

/// A doubling wait with a ceiling, and the count of tries it has been asked to wait after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
}

impl Backoff {
    /// Waits `first` after the first failure, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
            failures: 0,
        }
    }

    /// The wait before the next try, counting one more failure.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        self.failures += 1;
        wait
    }

    /// What the next call to [`Backoff::next_wait`] will return.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// How many failures have been counted since the start or the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts again from `first`, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let waits: Vec<u128> = (0..5).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1000, 1000]);
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.peek(), Duration::from_millis(200));
    }
}
