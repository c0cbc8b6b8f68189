//! The dashboard at `/` and its files under `/ui/`, built into the binary (`include_bytes!`),
//! so it works offline and a deployment is one file. Vendored libraries and their licences
//! are listed in `api/assets/README.md`.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

const INDEX: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
/// Apache ECharts 6.1.0 (Apache-2.0), `dist/echarts.min.js` of npm's `echarts`, gzip -9.
const ECHARTS_GZ: &[u8] = include_bytes!("../assets/dashboard/echarts.min.js.gz");

fn text(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Our own files change with the binary: always revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub(crate) async fn index() -> Response {
    text("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub(crate) async fn app_js() -> Response {
    text("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/app.css`.
pub(crate) async fn app_css() -> Response {
    text("text/css; charset=utf-8", APP_CSS)
}

/// `GET /ui/echarts.min.js`.
pub(crate) async fn echarts(headers: HeaderMap) -> Response {
    gzipped_script(&headers, ECHARTS_GZ)
}

/// A vendored script stored gzip-compressed: sent as it is to clients that take gzip (every
/// browser), inflated for the rest.
pub(crate) fn gzipped_script(headers: &HeaderMap, compressed: &'static [u8]) -> Response {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|c| c.trim().starts_with("gzip")));
    let mut response = if gzip {
        let mut response = compressed.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        let mut plain = Vec::new();
        let inflated =
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed), &mut plain);
        match inflated {
            Ok(_) => plain.into_response(),
            Err(e) => return ApiError::internal(&e).into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}
