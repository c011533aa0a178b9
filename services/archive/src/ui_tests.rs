use super::*;

fn header(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("{name} is set"))
        .to_str()
        .unwrap()
}

#[test]
fn every_asset_is_served_with_its_type_and_the_security_headers() {
    for (file, content_type, _) in ASSETS {
        let response = asset(file);
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(header(&response, header::CONTENT_TYPE), content_type);
        let policy = header(&response, header::CONTENT_SECURITY_POLICY);
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
}

#[test]
fn an_unknown_file_is_a_404_naming_it() {
    let response = asset("../Cargo.toml");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_page_has_no_inline_script_or_style_for_the_policy_to_block() {
    let (_, _, html) = ASSETS[0];
    for tag in html.split('<').filter(|t| t.starts_with("script")) {
        assert!(tag.contains("src=\"/ui/"), "an inline script: <{tag}");
    }
    assert!(!html.contains("<style"), "an inline style sheet");
    assert!(!html.contains(" style="), "an inline style attribute");
    assert!(!html.contains(" onclick="), "an inline event handler");
}

/// `{name}` and `${expression}` both become `{}`, so a documented route and the template
/// the script builds it with compare equal.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{}");
                }
                depth += 1;
            }
            '}' => depth -= 1,
            '$' => {}
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The routes the OpenAPI document and the API table of docs/api.md document.
fn documented_routes() -> Vec<String> {
    let openapi: serde_json::Value =
        serde_json::from_str(include_str!("../../api/openapi.json")).unwrap();
    let mut routes: Vec<String> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| normalise(p))
        .collect();
    let api_doc = include_str!("../../../docs/api.md");
    for method in ["`GET /v1/", "`POST /v1/"] {
        for (at, _) in api_doc.match_indices(method) {
            let rest = &api_doc[at + method.len() - "/v1/".len()..];
            let route = rest.split(['`', '?', '[']).next().unwrap();
            routes.push(normalise(route));
        }
    }
    routes
}

/// The console uses only the public API: every `/v1/` path its script asks for is one the
/// OpenAPI document or docs/api.md documents.
#[test]
fn the_console_calls_only_documented_api_routes() {
    let script = include_str!("../ui/app.js");
    let documented = documented_routes();
    let mut called = Vec::new();
    for quote in ['\'', '`'] {
        let opening = format!("{quote}/v1/");
        for (at, _) in script.match_indices(&opening) {
            let literal = &script[at + 1..];
            let end = literal.find(quote).unwrap();
            called.push(normalise(literal[..end].split('?').next().unwrap()));
        }
    }
    assert!(
        called.len() >= 10,
        "the script's API calls are found: {called:?}"
    );
    for path in &called {
        assert!(
            documented.contains(path),
            "the console calls {path}, which neither openapi.json nor docs/api.md documents; \
             the console may use only the public API"
        );
    }
}
