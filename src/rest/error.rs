//! REST errors: `{"error": "..."}` with a meaningful status. The one place
//! where cluster and query errors become HTTP statuses.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AuthError;
use crate::cluster::ClusterError;
use crate::query::QueryError;

/// An error answer; 503s and 429s carry `Retry-After` because they are worth
/// retrying.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let status = match &e {
            ClusterError::Unavailable(_) | ClusterError::NotLeader { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ClusterError::Invalid(_) => StatusCode::BAD_REQUEST,
            ClusterError::Conflict(_) => StatusCode::CONFLICT,
            ClusterError::NotFound(_) => StatusCode::NOT_FOUND,
            ClusterError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Cluster(e) => e.into(),
            QueryError::TextIndexBehind(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            // The shared cold store did not answer: worth retrying, and
            // the message names the range.
            QueryError::Storage(e @ crate::query::StoreError::ColdRangeUnavailable { .. }) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            QueryError::Storage(e) => ApiError::internal(e),
            QueryError::Overloaded(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, m),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => ApiError::new(StatusCode::UNAUTHORIZED, m),
            AuthError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        let h = resp.headers_mut();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                h.insert("retry-after", HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                h.insert("www-authenticate", HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}
