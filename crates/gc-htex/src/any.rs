//! One type for every engine a user endpoint can run, so the endpoint drives the pool
//! engines (gc-engine) and GlobusComputeEngine the same way.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gc_engine::{EngineError, TaskRequest};
use gc_wire::messagepack::TaskResult;
use serde_json::{Map, Value};

use crate::HtexEngine;

/// A running engine of either family.
pub enum AnyEngine {
    /// `ThreadPoolEngine` / `ProcessPoolEngine`.
    Pool(gc_engine::Engine),
    /// `GlobusComputeEngine`.
    Htex(HtexEngine),
}

/// A task's result-to-be, whichever engine runs it.
#[derive(Debug)]
pub enum AnyHandle {
    /// From a pool engine.
    Pool(gc_engine::TaskHandle),
    /// From GlobusComputeEngine.
    Htex(crate::TaskHandle),
}

impl AnyHandle {
    /// The task this handle belongs to.
    pub fn task_id(&self) -> uuid::Uuid {
        match self {
            AnyHandle::Pool(h) => h.task_id(),
            AnyHandle::Htex(h) => h.task_id(),
        }
    }
}

impl Future for AnyHandle {
    type Output = Result<TaskResult, EngineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AnyHandle::Pool(h) => Pin::new(h).poll(cx),
            AnyHandle::Htex(h) => Pin::new(h).poll(cx),
        }
    }
}

impl AnyEngine {
    /// Queue a task.
    pub fn submit(&self, request: TaskRequest) -> Result<AnyHandle, EngineError> {
        self.submit_placed(request, None)
    }

    /// Queue a task; `on_placed` is called when GlobusComputeEngine sends it to a block
    /// (never by the pool engines, which have no blocks).
    pub fn submit_placed(
        &self,
        request: TaskRequest,
        on_placed: Option<crate::PlacementHook>,
    ) -> Result<AnyHandle, EngineError> {
        match self {
            AnyEngine::Pool(e) => e.submit(request).map(AnyHandle::Pool),
            AnyEngine::Htex(e) => e.submit_placed(request, on_placed).map(AnyHandle::Htex),
        }
    }

    /// The engine's fields of a heartbeat's `global_state` (PROTOCOL-ENDPOINT §6.2).
    pub fn global_state(&self) -> Map<String, Value> {
        match self {
            AnyEngine::Pool(e) => e.status().global_state(),
            AnyEngine::Htex(e) => e.global_state(),
        }
    }

    /// Tasks accepted and not finished.
    pub fn outstanding_tasks(&self) -> usize {
        match self {
            AnyEngine::Pool(e) => {
                let s = e.status();
                s.pending_tasks + s.running_tasks
            }
            AnyEngine::Htex(e) => e.status().outstanding_tasks,
        }
    }

    /// Stop. Pool engines finish every accepted task; GlobusComputeEngine waits up to
    /// `drain` for them, then fails the rest, stops its managers and cancels its blocks.
    pub async fn shutdown(self, drain: Duration) {
        match self {
            AnyEngine::Pool(e) => e.shutdown().await,
            AnyEngine::Htex(e) => {
                let left = e.drain(drain).await;
                if left > 0 {
                    tracing::warn!("{left} task(s) still running at shutdown will fail");
                }
                e.shutdown().await;
            }
        }
    }
}
