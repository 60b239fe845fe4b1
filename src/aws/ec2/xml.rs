//! Reading EC2's Query API answers (XML, namespace `http://ec2.amazonaws.com/doc/2016-11-15/`):
//! `DescribeInstances`, `DescribeInstanceConnectEndpoints` and the error document. Element
//! names follow the `locationName`s of botocore's `ec2/2016-11-15/service-2.json`. Every
//! list and string a response carries is bounded here before it is kept.

use aws_smithy_xml::decode::{Document, ScopedDecoder, XmlDecodeError, try_data};

/// Longest string value kept from an answer (IDs, DNS names, tag values: AWS's longest,
/// a tag value, is 256 characters; a DNS name at most 253).
pub const MAX_STRING: usize = 1024;
/// Most items of one list kept from one page (instances, endpoints, tags).
pub const MAX_ITEMS: usize = 1000;

/// One EC2 instance, as far as reaching it needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ec2Instance {
    pub instance_id: String,
    /// `pending`, `running`, `stopped`, …
    pub state: String,
    pub private_ip: Option<String>,
    /// The instance's primary IPv6 address, else the first of its network interfaces'.
    pub ipv6: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl Ec2Instance {
    /// The `Name` tag, if any.
    pub fn name(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == "Name")
            .map(|(_, v)| v.as_str())
    }
}

/// One EC2 Instance Connect Endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectEndpoint {
    pub id: String,
    /// `create-complete`, `update-in-progress`, `delete-in-progress`, …
    pub state: String,
    pub dns_name: Option<String>,
    pub fips_dns_name: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
}

impl ConnectEndpoint {
    /// Whether a tunnel can be opened through it now: created, or being updated
    /// (docs/protocol.md §10.3).
    pub fn usable(&self) -> bool {
        self.state == "create-complete" || self.state.starts_with("update-")
    }
}

/// One page of an answer and the token for the next.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// An answer that cannot be read, or carries more than we accept.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(pub String);

impl From<XmlDecodeError> for BadAnswer {
    fn from(e: XmlDecodeError) -> BadAnswer {
        BadAnswer(format!("malformed XML: {e}"))
    }
}

fn text(tag: &mut ScopedDecoder) -> Result<String, BadAnswer> {
    let name = tag.start_el().local().to_owned();
    let data = try_data(tag)?;
    if data.chars().count() > MAX_STRING {
        return Err(BadAnswer(format!(
            "the element <{name}> is longer than {MAX_STRING} characters"
        )));
    }
    Ok(data.trim().to_owned())
}

fn some_text(tag: &mut ScopedDecoder) -> Result<Option<String>, BadAnswer> {
    Ok(Some(text(tag)?).filter(|s| !s.is_empty()))
}

fn check_root(root: &ScopedDecoder, expected: &str) -> Result<(), BadAnswer> {
    if root.start_el().local() != expected {
        return Err(BadAnswer(format!(
            "expected <{expected}>, got <{}>",
            root.start_el().local()
        )));
    }
    Ok(())
}

/// Adds one more item to `items` unless the page already holds [`MAX_ITEMS`].
fn push<T>(items: &mut Vec<T>, item: T, what: &str) -> Result<(), BadAnswer> {
    if items.len() >= MAX_ITEMS {
        return Err(BadAnswer(format!(
            "more than {MAX_ITEMS} {what} in one answer"
        )));
    }
    items.push(item);
    Ok(())
}

/// `DescribeInstancesResponse`: every `reservationSet/item/instancesSet/item`.
pub fn describe_instances(body: &str) -> Result<Page<Ec2Instance>, BadAnswer> {
    let mut doc = Document::new(body);
    let mut root = doc.root_element()?;
    check_root(&root, "DescribeInstancesResponse")?;
    let mut page = Page::default();
    while let Some(mut tag) = root.next_tag() {
        match tag.start_el().local() {
            "nextToken" => page.next_token = some_text(&mut tag)?,
            "reservationSet" => {
                while let Some(mut reservation) = tag.next_tag() {
                    while let Some(mut field) = reservation.next_tag() {
                        if field.start_el().local() != "instancesSet" {
                            continue;
                        }
                        while let Some(mut item) = field.next_tag() {
                            let instance = instance(&mut item)?;
                            push(&mut page.items, instance, "instances")?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(page)
}

fn instance(item: &mut ScopedDecoder) -> Result<Ec2Instance, BadAnswer> {
    let mut out = Ec2Instance::default();
    let mut eni_ipv6 = None;
    while let Some(mut field) = item.next_tag() {
        match field.start_el().local() {
            "instanceId" => out.instance_id = text(&mut field)?,
            "privateIpAddress" => out.private_ip = some_text(&mut field)?,
            "ipv6Address" => out.ipv6 = some_text(&mut field)?,
            "vpcId" => out.vpc_id = some_text(&mut field)?,
            "subnetId" => out.subnet_id = some_text(&mut field)?,
            "instanceState" => {
                while let Some(mut s) = field.next_tag() {
                    if s.start_el().local() == "name" {
                        out.state = text(&mut s)?;
                    }
                }
            }
            "tagSet" => {
                while let Some(mut tag) = field.next_tag() {
                    let (mut key, mut value) = (String::new(), String::new());
                    while let Some(mut kv) = tag.next_tag() {
                        match kv.start_el().local() {
                            "key" => key = text(&mut kv)?,
                            "value" => value = text(&mut kv)?,
                            _ => {}
                        }
                    }
                    push(&mut out.tags, (key, value), "tags")?;
                }
            }
            "networkInterfaceSet" if eni_ipv6.is_none() => {
                eni_ipv6 = first_eni_ipv6(&mut field)?;
            }
            _ => {}
        }
    }
    if out.instance_id.is_empty() {
        return Err(BadAnswer("an instance without instanceId".into()));
    }
    if out.ipv6.is_none() {
        out.ipv6 = eni_ipv6;
    }
    Ok(out)
}

/// `networkInterfaceSet/item/ipv6AddressesSet/item/ipv6Address`, the first one.
fn first_eni_ipv6(set: &mut ScopedDecoder) -> Result<Option<String>, BadAnswer> {
    let mut found = None;
    while let Some(mut eni) = set.next_tag() {
        while let Some(mut field) = eni.next_tag() {
            if field.start_el().local() != "ipv6AddressesSet" {
                continue;
            }
            while let Some(mut addr) = field.next_tag() {
                while let Some(mut a) = addr.next_tag() {
                    if a.start_el().local() == "ipv6Address" && found.is_none() {
                        found = some_text(&mut a)?;
                    }
                }
            }
        }
    }
    Ok(found)
}

/// `DescribeInstanceConnectEndpointsResponse`: every `instanceConnectEndpointSet/item`.
pub fn describe_endpoints(body: &str) -> Result<Page<ConnectEndpoint>, BadAnswer> {
    let mut doc = Document::new(body);
    let mut root = doc.root_element()?;
    check_root(&root, "DescribeInstanceConnectEndpointsResponse")?;
    let mut page = Page::default();
    while let Some(mut tag) = root.next_tag() {
        match tag.start_el().local() {
            "nextToken" => page.next_token = some_text(&mut tag)?,
            "instanceConnectEndpointSet" => {
                while let Some(mut item) = tag.next_tag() {
                    let mut e = ConnectEndpoint::default();
                    while let Some(mut field) = item.next_tag() {
                        match field.start_el().local() {
                            "instanceConnectEndpointId" => e.id = text(&mut field)?,
                            "state" => e.state = text(&mut field)?,
                            "dnsName" => e.dns_name = some_text(&mut field)?,
                            "fipsDnsName" => e.fips_dns_name = some_text(&mut field)?,
                            "vpcId" => e.vpc_id = some_text(&mut field)?,
                            "subnetId" => e.subnet_id = some_text(&mut field)?,
                            _ => {}
                        }
                    }
                    if e.id.is_empty() {
                        return Err(BadAnswer(
                            "an endpoint without instanceConnectEndpointId".into(),
                        ));
                    }
                    push(&mut page.items, e, "endpoints")?;
                }
            }
            _ => {}
        }
    }
    Ok(page)
}

/// EC2's error document: `<Response><Errors><Error><Code>…</Code><Message>…</Message>`.
/// The first error's code and message; `None` when the body is not one.
pub fn error(body: &str) -> Option<(String, String)> {
    let mut doc = Document::new(body);
    let mut root = doc.root_element().ok()?;
    if root.start_el().local() != "Response" {
        return None;
    }
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().local() != "Errors" {
            continue;
        }
        let mut first = tag.next_tag()?;
        let (mut code, mut message) = (String::new(), String::new());
        while let Some(mut field) = first.next_tag() {
            match field.start_el().local() {
                "Code" => code = text(&mut field).ok()?,
                "Message" => message = text(&mut field).ok()?,
                _ => {}
            }
        }
        return Some((code, message)).filter(|(c, _)| !c.is_empty());
    }
    None
}

#[cfg(test)]
#[path = "xml_tests.rs"]
mod tests;
