//! Company profiles as the page loop takes them: the chosen ids fetched a few at a time
//! under Jobo's request budget, each profile a page of one, and the 404s remembered in the
//! checkpoint (so they are not asked again every run).

use anyhow::Result;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use joblake_fetcher::{CompanyClient, Credits, FetchError};
use joblake_schema::{RawRows, Table};

use crate::checkpoint::ProfilesCheckpoint;
use crate::page_loop::{Feed, FeedPage};
use crate::summary::ProfileCounts;

type Answer = (String, Result<Option<RawRows>, FetchError>);

/// The profiles of the chosen companies.
pub struct ProfileFeed<'a> {
    answers: BoxStream<'a, Answer>,
    checkpoint: ProfilesCheckpoint,
    /// The checkpoint moved since the last page given (a 404, or old 404s forgotten).
    dirty: bool,
    counts: ProfileCounts,
    ended: bool,
}

impl<'a> ProfileFeed<'a> {
    /// Asks `client` for the profiles of `ids`, `concurrency` at once, from `checkpoint`
    /// (`dirty` when it already differs from the one committed).
    pub fn new(
        client: &'a CompanyClient,
        ids: Vec<String>,
        concurrency: usize,
        checkpoint: ProfilesCheckpoint,
        dirty: bool,
    ) -> ProfileFeed<'a> {
        let counts = ProfileCounts {
            due: ids.len() as u64,
            ..ProfileCounts::default()
        };
        let answers = futures::stream::iter(ids)
            .map(move |id| async move {
                let got = client.fetch(&id).await;
                (id, got)
            })
            .buffered(concurrency.max(1))
            .boxed();
        ProfileFeed {
            answers,
            checkpoint,
            dirty,
            counts,
            ended: false,
        }
    }

    /// Profiles due, fetched and missing (404) so far.
    pub fn counts(&self) -> ProfileCounts {
        self.counts
    }

    fn checkpoint_value(&self) -> serde_json::Value {
        serde_json::to_value(&self.checkpoint).expect("checkpoints serialise")
    }
}

impl Feed for ProfileFeed<'_> {
    fn table(&self) -> Table {
        Table::Companies
    }

    async fn next_page(&mut self) -> Option<Result<FeedPage>> {
        while !self.ended {
            match self.answers.next().await {
                Some((_, Ok(Some(profile)))) => {
                    self.counts.fetched += 1;
                    // A 404's memory rides with the next profile staged.
                    self.dirty = false;
                    return Some(Ok(FeedPage {
                        rows: profile,
                        checkpoint: self.checkpoint_value(),
                        credits: Credits::default(),
                    }));
                }
                Some((id, Ok(None))) => {
                    self.counts.not_found += 1;
                    self.dirty = true;
                    self.checkpoint
                        .not_found
                        .insert(id, Utc::now().date_naive());
                }
                // The fetcher's errors never hold the key.
                Some((_, Err(e))) => {
                    self.ended = true;
                    return Some(Err(anyhow::anyhow!("companies: {e}")));
                }
                None => self.ended = true,
            }
        }
        // The last 404s, on a page of their own.
        self.unstaged_checkpoint().map(|checkpoint| {
            Ok(FeedPage {
                rows: RawRows::default(),
                checkpoint,
                credits: Credits::default(),
            })
        })
    }

    fn unstaged_checkpoint(&mut self) -> Option<serde_json::Value> {
        std::mem::take(&mut self.dirty).then(|| self.checkpoint_value())
    }

    fn progress(&self) -> String {
        format!(
            ", {} of {} profiles, {} without one (404)",
            self.counts.fetched + self.counts.not_found,
            self.counts.due,
            self.counts.not_found
        )
    }
}
