//! The EC2 Query API calls an EC2 Instance Connect Endpoint client needs:
//! `DescribeInstances` and `DescribeInstanceConnectEndpoints` (form-encoded `POST /`,
//! `Version=2016-11-15`, SigV4 service `ec2`), answered in EC2's XML ([`crate::aws_api::ec2_xml`]):
//! `InstanceId.N` / `InstanceConnectEndpointId.N`, `Filter.N.Name` + `Filter.N.Value.M`
//! (with `*` and `?` wildcards), `MaxResults` + `NextToken` pagination, `DryRun`, and EC2's
//! error XML (`InvalidInstanceID.NotFound`, `InvalidInstanceID.Malformed`,
//! `UnauthorizedOperation`, `InvalidParameterValue`, …).

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use crate::aws_api::account::Account;
use crate::aws_api::ec2_xml::{self, Ec2Error};
use crate::aws_api::form::{field, parse_form};
use crate::world::config::InstanceConfig;
use crate::world::endpoints::EndpointConfig;
use crate::world::state::ApiCall;

/// The signing name of the EC2 API.
pub const SIGNING_NAME: &str = "ec2";
const MAX_BODY: usize = 64 * 1024;
/// Filters and IDs per request at most (EC2's own limits are 200 values per filter and
/// 1000 IDs; the testbed bounds the whole request instead).
const MAX_PARAMS: usize = 1000;

/// Reads the form body (bounded), checks the signature, answers `Action`.
pub async fn handle(state: &Account, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let e = Ec2Error::bad_value(format!("cannot read the request body: {e}"));
            return ec2_xml::error_response(&e);
        }
    };
    let result = state
        .authenticate(&parts, &body, SIGNING_NAME)
        .map_err(Ec2Error::from)
        .and_then(|(akid, cred)| {
            let form = parse_form(&body);
            let action = field(&form, "Action").unwrap_or_default().to_owned();
            state.record_call(ApiCall {
                service: SIGNING_NAME,
                operation: action.clone(),
                access_key_id: akid,
                target: None,
                os_user: None,
                ssh_public_key: None,
            });
            dispatch(state, &cred.arn, &action, &form)
        });
    match result {
        Ok(xml) => ec2_xml::respond(StatusCode::OK, xml),
        Err(e) => {
            tracing::debug!(code = e.code, "EC2 error: {}", e.message);
            ec2_xml::error_response(&e)
        }
    }
}

fn dispatch(
    state: &Account,
    caller: &str,
    action: &str,
    form: &[(String, String)],
) -> Result<String, Ec2Error> {
    if !matches!(
        action,
        "DescribeInstances" | "DescribeInstanceConnectEndpoints"
    ) {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        ));
    }
    if form.len() > MAX_PARAMS {
        return Err(Ec2Error::bad_value(format!(
            "The request has more than {MAX_PARAMS} parameters."
        )));
    }
    if state.config.ec2_describe_denied {
        return Err(Ec2Error::unauthorized(caller, action));
    }
    if field(form, "DryRun").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(Ec2Error::new(
            StatusCode::PRECONDITION_FAILED,
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    let filters = parse_filters(form)?;
    if action == "DescribeInstances" {
        describe_instances(state, form, &filters)
    } else {
        describe_endpoints(state, form, &filters)
    }
}

fn describe_instances(
    state: &Account,
    form: &[(String, String)],
    filters: &[Filter],
) -> Result<String, Ec2Error> {
    let ids = indexed(form, "InstanceId.");
    for id in &ids {
        if !is_instance_id(id) {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{id}\""),
            ));
        }
    }
    let max = max_results(form, 5, 1000, "maxResults")?;
    if max.is_some() && !ids.is_empty() {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    // On-premises managed nodes (`mi-…`) are not EC2 instances.
    let ec2: Vec<&InstanceConfig> = (state.config.instances.iter())
        .filter(|i| i.id.starts_with("i-"))
        .collect();
    let missing: Vec<&str> = (ids.iter())
        .filter(|id| !ec2.iter().any(|i| i.id == **id))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let message = match missing.as_slice() {
            [one] => format!("The instance ID '{one}' does not exist"),
            many => format!("The instance IDs '{}' do not exist", many.join(", ")),
        };
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidInstanceID.NotFound",
            message,
        ));
    }
    let probe = InstanceConfig::named("i-00000000", "");
    if let Some(f) = filters
        .iter()
        .find(|f| instance_values(&probe, &f.name).is_none())
    {
        return Err(Ec2Error::invalid_filter(&f.name));
    }
    let matching: Vec<&InstanceConfig> = (ec2.into_iter())
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .filter(|i| {
            filters
                .iter()
                .all(|f| f.matches(instance_values(i, &f.name)))
        })
        .collect();
    let (page, next) = paginate(&matching, form, max)?;
    Ok(ec2_xml::describe_instances(state, page, next.as_deref()))
}

fn describe_endpoints(
    state: &Account,
    form: &[(String, String)],
    filters: &[Filter],
) -> Result<String, Ec2Error> {
    let ids = indexed(form, "InstanceConnectEndpointId.");
    let all = &state.config.instance_connect_endpoints;
    // Unverified: the error code for an endpoint ID that does not exist.
    if let Some(id) = ids.iter().find(|id| !all.iter().any(|e| e.id == **id)) {
        return Err(Ec2Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidInstanceConnectEndpointId.NotFound",
            format!("The instance connect endpoint ID '{id}' does not exist"),
        ));
    }
    let probe = EndpointConfig::new("eice-0", "", "");
    if let Some(f) = filters
        .iter()
        .find(|f| endpoint_values(&probe, &f.name).is_none())
    {
        return Err(Ec2Error::invalid_filter(&f.name));
    }
    let max = max_results(form, 1, 50, "maxResults")?;
    let matching: Vec<&EndpointConfig> = (all.iter())
        .filter(|e| ids.is_empty() || ids.contains(&e.id))
        .filter(|e| {
            filters
                .iter()
                .all(|f| f.matches(endpoint_values(e, &f.name)))
        })
        .collect();
    let (page, next) = paginate(&matching, form, max)?;
    Ok(ec2_xml::describe_endpoints(state, page, next.as_deref()))
}

/// The values an instance has for a filter name; None: not a filter the testbed knows.
fn instance_values(i: &InstanceConfig, name: &str) -> Option<Vec<String>> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(i.tags.get(key).cloned().into_iter().collect());
    }
    Some(match name {
        "instance-id" => vec![i.id.clone()],
        "vpc-id" => vec![i.vpc_id().to_owned()],
        "subnet-id" => vec![i.subnet_id().to_owned()],
        "instance-state-name" => vec![i.ec2_state().to_owned()],
        "private-ip-address" => vec![i.ip_address()],
        "tag-key" => i.tags.keys().cloned().collect(),
        _ => return None,
    })
}

fn endpoint_values(e: &EndpointConfig, name: &str) -> Option<Vec<String>> {
    Some(match name {
        "instance-connect-endpoint-id" => vec![e.id.clone()],
        "vpc-id" => vec![e.vpc_id.clone()],
        "subnet-id" => vec![e.subnet_id.clone()],
        "state" => vec![e.state.clone()],
        // The testbed's endpoints carry no tags.
        n if n.starts_with("tag:") || n == "tag-key" => Vec::new(),
        _ => return None,
    })
}

/// `Filter.N.Name` and its `Filter.N.Value.M`.
#[derive(Debug, PartialEq)]
struct Filter {
    name: String,
    values: Vec<String>,
}

impl Filter {
    /// Whether any of the resource's values matches any of the filter's patterns.
    fn matches(&self, have: Option<Vec<String>>) -> bool {
        let have = have.unwrap_or_default();
        self.values
            .iter()
            .any(|p| have.iter().any(|v| glob(p.as_bytes(), v.as_bytes())))
    }
}

fn parse_filters(form: &[(String, String)]) -> Result<Vec<Filter>, Ec2Error> {
    let mut filters: Vec<(u32, Filter)> = Vec::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("Filter.") else {
            continue;
        };
        let Some((n, tail)) = rest.split_once('.') else {
            continue;
        };
        let n: u32 = n
            .parse()
            .map_err(|_| Ec2Error::bad_value(format!("Invalid parameter {k}")))?;
        let at = match filters.iter().position(|(m, _)| *m == n) {
            Some(at) => at,
            None => {
                let empty = Filter {
                    name: String::new(),
                    values: Vec::new(),
                };
                filters.push((n, empty));
                filters.len() - 1
            }
        };
        if tail == "Name" {
            filters[at].1.name = v.clone();
        } else if tail.starts_with("Value.") {
            filters[at].1.values.push(v.clone());
        }
    }
    filters.sort_by_key(|(n, _)| *n);
    let mut out = Vec::new();
    for (n, f) in filters {
        if f.name.is_empty() {
            return Err(Ec2Error::new(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                format!("The request must contain the parameter Filter.{n}.Name"),
            ));
        }
        out.push(f);
    }
    Ok(out)
}

/// EC2's filter wildcards: `*` any run, `?` any one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// `MaxResults` within `lo..=hi`, or None when absent.
fn max_results(
    form: &[(String, String)],
    lo: usize,
    hi: usize,
    name: &str,
) -> Result<Option<usize>, Ec2Error> {
    let Some(v) = field(form, "MaxResults") else {
        return Ok(None);
    };
    match v.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
        _ => Err(Ec2Error::bad_value(format!(
            "Value ( {v} ) for parameter {name} is invalid. Expecting a value between {lo} and {hi}."
        ))),
    }
}

/// The page `NextToken` starts at, `max` long, and the token of the next one.
fn paginate<'a, T>(
    all: &'a [T],
    form: &[(String, String)],
    max: Option<usize>,
) -> Result<(&'a [T], Option<String>), Ec2Error> {
    let start = match field(form, "NextToken") {
        None => 0,
        Some(t) => decode_token(t)
            .filter(|&s| s <= all.len())
            .ok_or_else(|| Ec2Error::bad_value(format!("Invalid value '{t}' for nextToken")))?,
    };
    let end = max.map_or(all.len(), |m| (start + m).min(all.len()));
    let next = (end < all.len()).then(|| encode_token(end));
    Ok((&all[start..end], next))
}

/// An opaque-looking token that carries the offset. Unverified: EC2's tokens are opaque
/// and longer; clients must only hand them back.
fn encode_token(offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("sallyport-testbed:{offset}"))
}

fn decode_token(token: &str) -> Option<usize> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.strip_prefix("sallyport-testbed:")?.parse().ok()
}

/// `^i-[0-9a-f]{8}([0-9a-f]{9})?$`.
fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// `PREFIX1`, `PREFIX2`, … in order of their number.
fn indexed(form: &[(String, String)], prefix: &str) -> Vec<String> {
    let mut out: Vec<(u32, String)> = (form.iter())
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.parse().ok()?, v.clone())))
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(glob(b"web-*", b"web-1"));
        assert!(glob(b"*", b""));
        assert!(glob(b"w?b", b"web"));
        assert!(glob(b"*-1", b"web-1"));
        assert!(!glob(b"web", b"web-1"));
        assert!(!glob(b"db-*", b"web-1"));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn filters_and_ids_parse_in_order() {
        let form = parse_form(
            b"Action=DescribeInstances&Filter.2.Name=vpc-id&Filter.2.Value.1=vpc-1&\
              Filter.1.Name=tag%3AName&Filter.1.Value.1=web&Filter.1.Value.2=db+1&\
              InstanceId.2=i-00000002&InstanceId.1=i-00000001",
        );
        let f = parse_filters(&form).unwrap();
        assert_eq!(f[0].name, "tag:Name");
        assert_eq!(f[0].values, ["web", "db 1"]);
        assert_eq!(f[1].name, "vpc-id");
        assert_eq!(indexed(&form, "InstanceId."), ["i-00000001", "i-00000002"]);
        let bad = parse_form(b"Filter.1.Value.1=x");
        assert_eq!(parse_filters(&bad).unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let items = [1, 2, 3, 4, 5, 6, 7];
        let form = |t: &str| vec![("NextToken".to_owned(), t.to_owned())];
        let (page, next) = paginate(&items, &[], Some(5)).unwrap();
        assert_eq!(page, [1, 2, 3, 4, 5]);
        let (page, next) = paginate(&items, &form(&next.unwrap()), Some(5)).unwrap();
        assert_eq!((page, next), (&[6, 7][..], None));
        for bad in ["x", &encode_token(99)] {
            assert_eq!(
                paginate(&items, &form(bad), Some(5)).unwrap_err().code,
                "InvalidParameterValue"
            );
        }
    }
}
