//! The one client type both APIs share: a scan type says which API it asks and how its
//! request body looks; the HTTP core does auth, pacing, retries and error mapping.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::http::{Auth, Core};
use crate::{Api, ClientConfig, FetchError, FetchStats, JoboScan, Page, SentrionScan};

/// A scan of one API: what [`Client`] needs to ask for its pages.
pub trait ScanRequest: Send + Sync {
    /// The API this scan asks.
    const API: Api;
    /// The JSON request body for the page at `cursor` (`None`: the first page).
    fn request_body(&self, cursor: Option<&str>) -> Result<Vec<u8>, FetchError>;
}

impl ScanRequest for JoboScan {
    const API: Api = Api::Jobo;
    fn request_body(&self, cursor: Option<&str>) -> Result<Vec<u8>, FetchError> {
        JoboScan::request_body(self, cursor)
    }
}

impl ScanRequest for SentrionScan {
    const API: Api = Api::Sentrion;
    fn request_body(&self, cursor: Option<&str>) -> Result<Vec<u8>, FetchError> {
        SentrionScan::request_body(self, cursor)
    }
}

/// A client of the API that scans of type `S` ask; see [`JoboClient`] and [`SentrionClient`].
pub struct Client<S> {
    core: Core,
    _scan: PhantomData<fn(&S)>,
}

/// Client for the Jobo career sites feed (`X-Api-Key`, credits in headers).
pub type JoboClient = Client<JoboScan>;
/// Client for the Sentrion jobs search (Bearer key, `{success, data, error}` envelope).
pub type SentrionClient = Client<SentrionScan>;

impl<S> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl<S: ScanRequest> Client<S> {
    /// Builds a client; fails on an empty or header-unsafe key or a bad base URL.
    pub fn new(cfg: ClientConfig) -> Result<Self, FetchError> {
        let (path, auth) = match S::API {
            Api::Jobo => (crate::jobo::PATH, Auth::ApiKeyHeader),
            Api::Sentrion => (crate::sentrion::PATH, Auth::Bearer),
        };
        Ok(Client {
            core: Core::new(S::API, cfg, path, auth)?,
            _scan: PhantomData,
        })
    }

    /// Fetches one page: the first of the scan with `cursor = None`, else the one after `cursor`.
    pub async fn fetch_page(&self, scan: &S, cursor: Option<&str>) -> Result<Page, FetchError> {
        let body = Bytes::from(scan.request_body(cursor)?);
        let parse = match S::API {
            Api::Jobo => crate::jobo::parse_page,
            Api::Sentrion => crate::sentrion::parse_page,
        };
        self.core.post(body, cursor.is_some(), parse).await
    }

    /// The scan as a lazy stream of pages from `cursor` (`None`: the start) to the last page.
    ///
    /// A page is requested only when the stream is polled, so a caller that checkpoints
    /// each page before asking for the next has at most one page in flight. The stream
    /// ends after the last page or after the first error (a dead cursor included: the
    /// caller decides where a restart begins).
    pub fn pages(
        &self,
        scan: S,
        cursor: Option<String>,
    ) -> impl Stream<Item = Result<Page, FetchError>> + Send + '_
    where
        S: 'static,
    {
        let scan = Arc::new(scan);
        futures::stream::try_unfold(Some(cursor), move |next| {
            let scan = Arc::clone(&scan);
            async move {
                let Some(cursor) = next else {
                    return Ok(None);
                };
                let page = self.fetch_page(&scan, cursor.as_deref()).await?;
                let after = if page.has_more {
                    Some(page.next_cursor.clone())
                } else {
                    None
                };
                Ok(Some((page, after)))
            }
        })
    }

    /// Live counters of this client.
    pub fn stats(&self) -> Arc<FetchStats> {
        self.core.stats()
    }

    /// The API it talks to.
    pub fn api(&self) -> Api {
        S::API
    }
}
