//! Splitting work over processes: one process holds at most 20,000 open files, so above
//! `--per-process` connections the tool re-executes itself as `eventwire-load worker` children.
//! A shard runs the same code in-process or in a child; parent and shard exchange JSON lines
//! (the job, then `Ready`, any number of `Step`s each way, `Finish`, `Done`) over the child's
//! stdin and stdout.

use std::ops::Range;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::{connect, fanout, silent, streams};

/// The work of one shard.
#[derive(Debug, Serialize, Deserialize)]
pub enum Job {
    /// Silent sockets (`silent`).
    Silent(silent::Job),
    /// Stream opening burst (`connect`).
    Connect(connect::Job),
    /// Checked SSE streams (`storm`, `batch`).
    Streams(streams::Job),
    /// Timed subscribers of any SSE server (`bench`).
    Fanout(fanout::Job),
}

/// Shard to parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum Up {
    /// The shard's connections are open.
    Ready(Value),
    /// The answer to a `Step` (subcommand-specific).
    Step(Value),
    /// The shard's results.
    Done(Value),
}

/// Parent to shard.
#[derive(Debug, Serialize, Deserialize)]
pub enum Down {
    /// A command between `Ready` and `Finish` (subcommand-specific).
    Step(Value),
    /// Stop the disturbance and check against this (subcommand-specific) value.
    Finish(Value),
}

/// The parent's handle on one shard.
#[derive(Debug)]
pub struct Shard {
    down: mpsc::UnboundedSender<Down>,
    up: mpsc::UnboundedReceiver<Up>,
    _child: Option<Child>,
}

impl Shard {
    /// Waits for the shard's `Ready`.
    pub async fn ready(&mut self) -> Result<Value, Error> {
        match self.up.recv().await {
            Some(Up::Ready(v)) => Ok(v),
            Some(Up::Done(_) | Up::Step(_)) => Err(Error::Usage(
                "shard answered out of turn before ready".into(),
            )),
            None => Err(Error::Ended("shard exited before ready")),
        }
    }

    /// Sends `Step`.
    pub fn step(&self, value: Value) {
        let _ = self.down.send(Down::Step(value));
    }

    /// The worker process's id (`None` when the shard runs in this process).
    pub fn pid(&self) -> Option<u32> {
        self._child.as_ref().and_then(Child::id)
    }

    /// A handle that sends `Step`s while the shard itself is borrowed elsewhere.
    pub fn sender(&self) -> StepSender {
        StepSender(self.down.clone())
    }

    /// Waits for the shard's answer to a `Step`.
    pub async fn stepped(&mut self) -> Result<Value, Error> {
        match self.up.recv().await {
            Some(Up::Step(v)) => Ok(v),
            Some(_) => Err(Error::Usage("shard answered out of turn".into())),
            None => Err(Error::Ended("shard exited before answering a step")),
        }
    }

    /// Sends `Finish`.
    pub fn finish(&self, value: Value) {
        let _ = self.down.send(Down::Finish(value));
    }

    /// Waits for the shard's `Done`.
    pub async fn done(&mut self) -> Result<Value, Error> {
        loop {
            match self.up.recv().await {
                Some(Up::Done(v)) => return Ok(v),
                Some(Up::Ready(_) | Up::Step(_)) => continue,
                None => return Err(Error::Ended("shard exited before done")),
            }
        }
    }
}

/// Sends `Step`s to one shard (see [`Shard::sender`]).
#[derive(Debug, Clone)]
pub struct StepSender(mpsc::UnboundedSender<Down>);

impl StepSender {
    /// Sends `Step`.
    pub fn step(&self, value: Value) {
        let _ = self.0.send(Down::Step(value));
    }
}

/// Splits `0..total` into shards of at most `per_process` items.
pub fn split(total: usize, per_process: usize) -> Vec<Range<usize>> {
    let shards = total.div_ceil(per_process.max(1)).max(1);
    let base = total / shards;
    let extra = total % shards;
    let mut start = 0;
    (0..shards)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// Starts the shards: in this process when there is one, else one child process each.
pub fn start(jobs: Vec<Job>) -> Result<Vec<Shard>, Error> {
    if jobs.len() == 1 {
        return Ok(jobs.into_iter().map(start_local).collect());
    }
    jobs.into_iter().map(start_child).collect()
}

fn start_local(job: Job) -> Shard {
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(job, down_rx, up_tx));
    Shard {
        down: down_tx,
        up: up_rx,
        _child: None,
    }
}

fn start_child(job: Job) -> Result<Shard, Error> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Usage("worker pipes".into()));
    };
    let (down_tx, mut down_rx) = mpsc::unbounded_channel::<Down>();
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let first = serde_json::to_string(&job)?;
    tokio::spawn(async move {
        let mut line = first;
        loop {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            let _ = stdin.flush().await;
            match down_rx.recv().await {
                Some(msg) => match serde_json::to_string(&msg) {
                    Ok(text) => line = text,
                    Err(_) => return,
                },
                None => return,
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Up>(&line) {
                Ok(msg) => {
                    if up_tx.send(msg).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("worker sent a bad line ({e}): {line}"),
            }
        }
    });
    Ok(Shard {
        down: down_tx,
        up: up_rx,
        _child: Some(child),
    })
}

async fn run(job: Job, down: mpsc::UnboundedReceiver<Down>, up: mpsc::UnboundedSender<Up>) {
    match job {
        Job::Silent(job) => silent::shard(job, down, up).await,
        Job::Connect(job) => connect::shard(job, down, up).await,
        Job::Streams(job) => streams::shard(job, down, up).await,
        Job::Fanout(job) => fanout::shard(job, down, up).await,
    }
}

/// `eventwire-load worker`: reads a job from stdin, runs it, answers on stdout.
pub async fn worker_main() -> Result<(), Error> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines
        .next_line()
        .await?
        .ok_or(Error::Ended("no job on stdin"))?;
    let job: Job = serde_json::from_str(&first)?;
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let (up_tx, mut up_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Down>(&line) {
                Ok(msg) => {
                    let _ = down_tx.send(msg);
                }
                Err(e) => eprintln!("worker got a bad line ({e})"),
            }
        }
    });
    let task = tokio::spawn(run(job, down_rx, up_tx));
    let mut stdout = tokio::io::stdout();
    while let Some(msg) = up_rx.recv().await {
        let done = matches!(msg, Up::Done(_));
        let mut line = serde_json::to_string(&msg)?;
        line.push('\n');
        stdout.write_all(line.as_bytes()).await?;
        stdout.flush().await?;
        if done {
            break;
        }
    }
    task.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_covers_everything() {
        assert_eq!(split(10, 18_000), vec![0..10]);
        assert_eq!(split(19_995, 18_000), vec![0..9_998, 9_998..19_995]);
        assert_eq!(split(0, 5), vec![0..0]);
    }
}
