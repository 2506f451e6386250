//! A fixed number of slots for one kind of work: a caller waits a short,
//! bounded time for one, then is shed (the caller answers 429 /
//! RESOURCE_EXHAUSTED). Bounded waiting keeps a burst from queueing work,
//! and its memory, without limit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    free: Arc<Semaphore>,
    max: usize,
    max_wait: Duration,
}

impl Slots {
    pub fn new(max: usize, max_wait: Duration) -> Slots {
        assert!(max > 0, "at least one slot");
        Slots {
            free: Arc::new(Semaphore::new(max)),
            max,
            max_wait,
        }
    }

    /// How many there are.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot, held until the permit is dropped; `None` when none came free
    /// within the wait.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(self.max_wait, self.free.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_max_are_held_and_a_waiter_gives_up_after_its_wait() {
        let slots = Slots::new(2, Duration::from_millis(200));
        let a = slots.acquire().await.unwrap();
        let _b = slots.acquire().await.unwrap();
        let started = std::time::Instant::now();
        assert!(slots.acquire().await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(200));
        // A slot freed while a caller waits goes to it.
        let waiter = slots.acquire();
        drop(a);
        assert!(waiter.await.is_some());
    }
}
