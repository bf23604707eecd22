//! The HTML a browser sees at the authorization endpoint: a consent form or an error page.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::Flavor;
use crate::identity::DEFAULT_LOGIN;

/// What the consent form shows and posts back.
pub(crate) struct ConsentPage<'a> {
    pub(crate) flavor: Flavor,
    /// Absolute URL the form posts to (the authorization endpoint itself).
    pub(crate) action: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) login_hint: Option<&'a str>,
    /// The original authorization parameters, echoed as hidden fields.
    pub(crate) params: &'a [(String, String)],
}

impl ConsentPage<'_> {
    /// The 200 response with the self-contained consent form.
    pub(crate) fn render(&self) -> Response {
        let provider = self.flavor.display_name();
        let hidden: String = self
            .params
            .iter()
            .map(|(name, value)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(name), escape(value)))
            .collect::<Vec<_>>()
            .join("\n      ");
        let scopes_section = if self.scopes.is_empty() {
            "<p>This integration asks for access to the pages you choose in your workspace.</p>".to_owned()
        } else {
            let items: String = self.scopes.iter().map(|s| format!("<li><code>{}</code></li>", escape(s))).collect();
            format!(
                r#"<p>It asks for these scopes:</p>
    <ul>{items}</ul>
    <label>Scopes to grant (remove some to grant less)
      <input type="text" name="granted_scope" value="{}"></label>"#,
                escape(&self.scopes.join(" "))
            )
        };
        let login = escape(self.login_hint.unwrap_or(DEFAULT_LOGIN));
        let body = format!(
            r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sandbox {provider} — not the real provider</title>
  <style>{STYLE}</style>
</head>
<body>
  <main>
    <h1>Sandbox {provider}</h1>
    <p class="warning">This is an emulator, not the real provider. No real account is involved.</p>
    <p>The application <code>{client_id}</code> wants to connect to your {provider} account.</p>
    <form method="post" action="{action}">
      {hidden}
      <label>Sign in as (e-mail)
        <input type="email" name="login" value="{login}" required></label>
    {scopes_section}
      <div class="buttons">
        <button type="submit" name="decision" value="approve">Approve</button>
        <button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
      </div>
    </form>
  </main>
</body>
</html>
"#,
            client_id = escape(self.client_id),
            action = escape(self.action),
        );
        html(StatusCode::OK, body)
    }
}

/// A 400 error page: shown instead of redirecting when the client or redirect URI is in doubt.
pub(crate) fn error_page(flavor: Flavor, error: &str, message: &str) -> Response {
    let provider = flavor.display_name();
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sandbox {provider} — error</title>
  <style>{STYLE}</style>
</head>
<body>
  <main>
    <h1>Sandbox {provider}: authorization error</h1>
    <p class="warning">Error 400: <code>{error}</code></p>
    <p>{message}</p>
  </main>
</body>
</html>
"#,
        error = escape(error),
        message = escape(message),
    );
    html(StatusCode::BAD_REQUEST, body)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // A consent page must never be framed (clickjacking), as real providers ensure.
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f4f6;margin:0}\
main{max-width:32rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}.warning{background:#fff3cd;padding:.5rem;border-radius:4px}\
label{display:block;margin:1rem 0}input[type=text],input[type=email]{width:100%;padding:.4rem;\
box-sizing:border-box}.buttons{display:flex;gap:1rem}button{padding:.5rem 1.5rem}";

/// Escapes text for HTML element content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_escaped() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
