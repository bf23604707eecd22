//! Per-key async mutexes, for single-flight work within one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A lazily created async mutex per integration id; unused entries are dropped as they go.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<Map>,
}

#[derive(Default)]
struct Map {
    entries: HashMap<i32, Weak<AsyncMutex<()>>>,
    /// Unused entries are swept when the map reaches this size: sweeping on every insert would
    /// cost a pass over every held lock each time (quadratic in a storm of 10,000 refreshes).
    sweep_at: usize,
}

impl KeyedLocks {
    /// Waits for and holds the lock of `key` until the guard is dropped.
    pub async fn lock(&self, key: i32) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.locks.lock().expect("keyed lock map poisoned");
            match map.entries.get(&key).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    if map.entries.len() >= map.sweep_at {
                        // Forget entries nobody holds any more; sweep again at twice what is left.
                        map.entries.retain(|_, weak| weak.strong_count() > 0);
                        map.sweep_at = (map.entries.len() * 2).max(64);
                    }
                    let mutex = Arc::new(AsyncMutex::new(()));
                    map.entries.insert(key, Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_held_once_and_released_keys_are_forgotten() {
        let locks = KeyedLocks::default();
        let held = locks.lock(1).await;
        assert!(locks.locks.lock().unwrap().entries[&1].upgrade().unwrap().try_lock().is_err());
        drop(held);
        for key in 0..10_000 {
            drop(locks.lock(key).await);
        }
        let size = locks.locks.lock().unwrap().entries.len();
        assert!(size <= 128, "{size} entries for no held lock");
    }
}
