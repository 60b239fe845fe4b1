//! The AWS Query protocol's request body (EC2, STS): `application/x-www-form-urlencoded`
//! pairs, percent-decoded, `+` a space.

use crate::aws_api::sigv4::percent_decode;

/// The body's `name=value` pairs in order, decoded (invalid UTF-8 replaced).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    // percent_decode reads `+` as a space, as form encoding wants.
    let dec = |s: &str| String::from_utf8_lossy(&percent_decode(s)).into_owned();
    (text.split('&').filter(|p| !p.is_empty()))
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

/// The first value of `name`, unless it is empty.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    (form.iter())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_in_order_with_plus_as_space() {
        let f = parse_form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx&E=&A=x");
        assert_eq!(f[0], ("Action".to_owned(), "AssumeRole".to_owned()));
        assert_eq!(field(&f, "RoleArn"), Some("arn:aws:iam::1:role/x"));
        assert_eq!(field(&f, "E"), None);
        assert_eq!(field(&f, "A"), Some("x"));
        let f = parse_form(b"RoleSessionName=a+b&k%2Bv=1%2B1");
        assert_eq!(field(&f, "RoleSessionName"), Some("a b"));
        assert_eq!(field(&f, "k+v"), Some("1+1"));
    }
}
