//! The shard's background tasks that own sockets: listeners, peer links and readers, client
//! connections. A stopping shard ends them all with [`TaskSet::stop_all`].
//!
//! Why they must be ended, not left behind: glommio does not drop the tasks an executor still
//! holds when its thread returns, so a detached listener outlives its shard and keeps its port
//! bound (with `SO_REUSEPORT`). A node restarted in the same process binds the port again and
//! the kernel hands part of the incoming connections to the dead listener, which never accepts.
//!
//! Invariants: every task spawned through the set is in it until it finishes or is stopped;
//! once [`TaskSet::stop_all`] has begun, the set spawns nothing more (a task spawned by a task
//! being stopped is dropped unstarted); when `stop_all` returns, every task's future is dropped
//! and with it every socket it owned.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::task::JoinHandle;
use glommio::{GlommioError, TaskQueueHandle};

/// How long [`TaskSet::stop_all`] lets the reactor cancel the stopped tasks' operations.
const CANCELLATIONS_SETTLE: Duration = Duration::from_millis(5);

/// The shard's socket-owning tasks (cheap to clone: clones share one set).
#[derive(Clone, Default)]
pub struct TaskSet(Rc<RefCell<Running>>);

#[derive(Default)]
struct Running {
    next_id: u64,
    tasks: HashMap<u64, JoinHandle<()>>,
    stopping: bool,
}

impl TaskSet {
    /// Runs `future` as a task of this set, in the spawning task's queue.
    pub fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        if let Some((id, task)) = self.tracked(future) {
            self.keep(id, glommio::spawn_local(task).detach());
        }
    }

    /// Runs `future` as a task of this set in task queue `queue`.
    pub fn spawn_into(
        &self,
        future: impl Future<Output = ()> + 'static,
        queue: TaskQueueHandle,
    ) -> Result<(), GlommioError<()>> {
        if let Some((id, task)) = self.tracked(future) {
            self.keep(id, glommio::spawn_local_into(task, queue)?.detach());
        }
        Ok(())
    }

    /// Ends every task of the set and waits until their futures are dropped.
    pub async fn stop_all(&self) {
        let stopped: Vec<JoinHandle<()>> = {
            let mut running = self.0.borrow_mut();
            running.stopping = true;
            running.tasks.drain().map(|(_, task)| task).collect()
        };
        for task in &stopped {
            task.cancel();
        }
        for task in stopped {
            task.await;
        }
        // A dropped socket's operation in flight (an accept, a read) is cancelled by a request
        // the reactor submits on its next turn; until the kernel completes that cancellation it
        // holds the socket open. One timer turn lets the reactor submit and reap them.
        glommio::timer::sleep(CANCELLATIONS_SETTLE).await;
    }

    /// `future`, wrapped to leave the set when it finishes, with its id in the set; `None`
    /// once the set is stopping.
    fn tracked(
        &self,
        future: impl Future<Output = ()> + 'static,
    ) -> Option<(u64, impl Future<Output = ()> + 'static)> {
        let mut running = self.0.borrow_mut();
        if running.stopping {
            return None;
        }
        let id = running.next_id;
        running.next_id += 1;
        let set = self.clone();
        Some((id, async move {
            future.await;
            set.0.borrow_mut().tasks.remove(&id);
        }))
    }

    fn keep(&self, id: u64, task: JoinHandle<()>) {
        self.0.borrow_mut().tasks.insert(id, task);
    }
}
