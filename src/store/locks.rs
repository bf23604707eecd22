//! Per-key async mutexes, for single-flight work within one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A lazily created async mutex per integration id; unused entries are dropped as they go.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<i32, Weak<AsyncMutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for and holds the lock of `key` until the guard is dropped.
    pub async fn lock(&self, key: i32) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = self.locks.lock().expect("keyed lock map poisoned");
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    // Forget entries nobody holds any more before adding one, so the map stays small.
                    locks.retain(|_, weak| weak.strong_count() > 0);
                    let mutex = Arc::new(AsyncMutex::new(()));
                    locks.insert(key, Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }
}
