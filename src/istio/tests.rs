//! Table-driven tests of the import: the seed examples and every way an object can
//! be left out or wrong.

use serde_json::{Value, json};

use super::*;

const DISTRIBUTE: &str = include_str!("../../api/examples/istio/foo-distribute.yaml");
const FAILOVER: &str = include_str!("../../api/examples/istio/foo-failover.yaml");

fn run(files: &[(&str, &str)]) -> Import {
    let inputs: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    import(&inputs, &Options::default())
}

fn one(text: &str) -> Import {
    run(&[("in.yaml", text)])
}

/// The imported services as JSON (the printed form).
fn services(i: &Import) -> Vec<Value> {
    i.services
        .iter()
        .map(|ns| serde_json::to_value(ns).unwrap())
        .collect()
}

fn notes(list: &[Note]) -> Vec<String> {
    list.iter().map(Note::to_string).collect()
}

fn has(list: &[Note], needle: &str) -> bool {
    list.iter().any(|n| n.to_string().contains(needle))
}

#[test]
fn seed_distribute_example() {
    let i = one(DISTRIBUTE);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let got = services(&i);
    assert_eq!(got.len(), 1);
    let ns = &got[0];
    assert_eq!(ns["name"], "foo.com");
    assert_eq!(ns["policy"], "Locality");
    assert_eq!(
        ns["targets"],
        json!([
            {"name": "foo", "address": "192.0.2.10", "locality": "region1/zone1", "ratio": 1,
             "probeAddress": "192.0.2.10", "enabled": true},
            {"name": "foo-cluster2", "address": "198.51.100.10", "locality": "region2/zone2",
             "ratio": 1, "probeAddress": "198.51.100.10", "enabled": true}
        ])
    );
    assert_eq!(
        ns["healthCheck"],
        json!({"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "flapDamping": false, "periodSeconds": 4, "timeoutSeconds": 3,
               "failureThreshold": 3, "successThreshold": 1})
    );
    assert_eq!(
        ns["distribute"],
        json!([{"from": "*", "to": {"region1/zone1": 99, "region2/zone2": 1}}])
    );
    assert_eq!(ns["failover"], json!([]));
    // Every field without an equivalent is named, with its object.
    for needle in [
        "(WorkloadGroup default/foo): spec.template: not mapped",
        "(ServiceEntry default/foo): spec.ports: not mapped",
        "(DestinationRule default/foo): spec.trafficPolicy.outlierDetection: not mapped",
        "(DestinationRule default/foo): spec.trafficPolicy.tls: not mapped",
    ] {
        assert!(
            has(&i.left_out, needle),
            "{needle}: {:#?}",
            notes(&i.left_out)
        );
    }
    assert_eq!(i.left_out.len(), 4, "{:#?}", notes(&i.left_out));
    assert!(
        i.left_out[0]
            .to_string()
            .starts_with("in.yaml: document 3 ")
    );
}

#[test]
fn seed_failover_example_replaces_the_distribute_rule() {
    let i = run(&[("d.yaml", DISTRIBUTE), ("f.yaml", FAILOVER)]);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let ns = &services(&i)[0];
    assert_eq!(ns["policy"], "Locality");
    assert_eq!(ns["distribute"], json!([]));
    assert_eq!(
        ns["failover"],
        json!([{"from": "region1", "to": "region2"}])
    );
    assert!(has(
        &i.left_out,
        "d.yaml: document 5 (DestinationRule default/foo): not imported: a later object"
    ));
    assert!(has(
        &i.left_out,
        "f.yaml: document 1 (DestinationRule default/foo): spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: mapped to region \"region1\" -> \"region2\""
    ));
}

/// The first seed article's version, as published: `locailityLbSetting` misspelt
/// and `tls` one level too high. Both are named; the distribute rule of the first
/// DestinationRule is not used because the second (same name) replaces it.
#[test]
fn misspelt_fields_are_named() {
    let text = r#"
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
    name: foo
spec:
    address: 192.0.2.10
    labels:
        run: foo
    locality: region1/zone1
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
    name: foo
spec:
    hosts:
        - foo.com
    resolution: STATIC
    workloadSelector:
        labels:
            run: foo
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: foo
spec:
  host: foo.com
  trafficPolicy:
    loadBalancer:
      locailityLbSetting:
        enabled: true
        failover:
        - from: region1/zone1
          to: region2/zone2
      outlierDetection:
        baseEjectionTime: 10s
  tls:
    mode: ISTION_MUTUAL
"#;
    let i = one(text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    for needle in [
        "spec.trafficPolicy.loadBalancer.locailityLbSetting: not mapped: unknown field",
        "spec.trafficPolicy.loadBalancer.outlierDetection: not mapped: unknown field",
        "spec.tls: not mapped: unknown field",
    ] {
        assert!(
            has(&i.left_out, needle),
            "{needle}: {:#?}",
            notes(&i.left_out)
        );
    }
    // Without a usable localityLbSetting or outlier detection: one target, RoundRobin.
    assert_eq!(services(&i)[0]["policy"], "RoundRobin");
}

/// The seed's WorkloadEntry as written: its address is a host name, which becomes
/// an fqdn target.
#[test]
fn host_name_addresses_become_fqdn_targets() {
    let text = DISTRIBUTE.replace("address: 192.0.2.10", "address: foo.bar.svc.cluster2");
    let i = one(&text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let ns = &services(&i)[0];
    assert_eq!(
        ns["targets"][0],
        json!({"name": "foo", "fqdn": "foo.bar.svc.cluster2", "locality": "region1/zone1",
               "ratio": 1, "enabled": true})
    );
    assert_eq!(ns["targets"][1]["address"], "198.51.100.10");
}

#[test]
fn endpoints_and_weights_choose_the_policy() {
    let entry = |weights: &str| {
        format!(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ngx, namespace: web}}
spec:
  hosts: [ngx.gslb.example, Other.Gslb.Example.]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints:
  - address: 192.0.2.25
    ports: {{http: 80}}
    {weights}
  - address: "2001:db8::25"
"#
        )
    };
    let i = one(&entry(""));
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let got = services(&i);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["name"], "other.gslb.example");
    assert_eq!(got[0]["policy"], "RoundRobin");
    let names: Vec<&Value> = got[0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(names, [&json!("192-0-2-25"), &json!("2001-db8-25")]);
    assert!(has(&i.left_out, "spec.endpoints[0].ports: not mapped"));
    assert!(has(&i.left_out, "spec.location: not mapped"));
    // A weight of 0 is Istio's default, 1.
    let i = one(&entry("weight: 0"));
    assert_eq!(services(&i)[0]["policy"], "RoundRobin");
    let i = one(&entry("weight: 3"));
    let ns = &services(&i)[0];
    assert_eq!(ns["policy"], "Ratio");
    assert_eq!(ns["targets"][0]["ratio"], 3);
    assert_eq!(ns["targets"][1]["ratio"], 1);
}

#[test]
fn outlier_detection_with_localities_means_locality() {
    let text = r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.gslb.example]
  endpoints:
  - {address: 192.0.2.1, locality: r1/z1, weight: 5}
  - {address: 192.0.2.2, locality: r2}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: a}
spec:
  host: A.gslb.example
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
"#;
    let i = one(text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let ns = &services(&i)[0];
    assert_eq!(ns["policy"], "Locality");
    // The weight is kept but does nothing under Locality: said so.
    assert!(has(
        &i.left_out,
        "spec.endpoints[0].weight: kept as the target's ratio"
    ));
    // Disabled locality load balancing: weights decide.
    let text = text.replace(
        "    outlierDetection: {consecutive5xxErrors: 1}",
        "    outlierDetection: {consecutive5xxErrors: 1}\n    loadBalancer:\n      localityLbSetting:\n        enabled: false\n        failover: [{from: r1, to: r2}]",
    );
    let i = one(&text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    assert_eq!(services(&i)[0]["policy"], "Ratio");
    assert!(has(
        &i.left_out,
        "localityLbSetting.enabled: not mapped: locality load balancing is disabled"
    ));
}

#[test]
fn lists_empty_documents_and_other_kinds() {
    let text = r#"
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: ServiceEntry
  metadata: {name: a, namespace: prod}
  spec:
    hosts: [a.gslb.example]
    endpoints: [{address: 192.0.2.1}]
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: a}
  spec: {hosts: [a.gslb.example]}
- apiVersion: v1
  kind: Service
  metadata: {name: a}
---
"#;
    let i = one(text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    assert_eq!(services(&i).len(), 1);
    assert!(
        has(
            &i.left_out,
            "in.yaml: document 1, items[1] (VirtualService default/a): VirtualService has no NameService equivalent"
        ),
        "{:#?}",
        notes(&i.left_out)
    );
    assert!(has(
        &i.left_out,
        "document 1, items[2] (Service default/a): Service of \"v1\" is not imported"
    ));
    assert_eq!(i.left_out.len(), 2, "{:#?}", notes(&i.left_out));
}

#[test]
fn unused_objects_are_named() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: lonely}
spec: {address: 192.0.2.9, labels: {app: x}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: lonely}
spec: {metadata: {labels: {app: x}}, probe: {tcpSocket: {port: 80}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: lonely}
spec: {host: nothing.example}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.gslb.example, "*.gslb.example"]
  endpoints: [{address: 192.0.2.1}]
"#;
    let i = one(text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    assert_eq!(services(&i).len(), 1);
    for needle in [
        "(WorkloadEntry default/lonely): not imported: no ServiceEntry selects",
        "(WorkloadGroup default/lonely): not imported",
        "(DestinationRule default/lonely): spec.host: not imported",
        "(ServiceEntry default/a): spec.hosts[1]: not mapped: the wildcard host",
    ] {
        assert!(
            has(&i.left_out, needle),
            "{needle}: {:#?}",
            notes(&i.left_out)
        );
    }
}

#[test]
fn selection_is_per_namespace_and_probe_defaults_are_kubernetes() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: one}
spec: {address: 192.0.2.1, labels: {app: x}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: two}
spec: {address: 192.0.2.2, labels: {app: x}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: g, namespace: one}
spec: {metadata: {labels: {app: x}}, probe: {tcpSocket: {port: 8443}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s, namespace: one}
spec:
  hosts: [s.gslb.example]
  workloadSelector: {labels: {app: x}}
"#;
    let i = one(text);
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let ns = &services(&i)[0];
    assert_eq!(ns["targets"].as_array().unwrap().len(), 1);
    assert_eq!(ns["targets"][0]["address"], "192.0.2.1");
    assert_eq!(
        ns["healthCheck"],
        json!({"tcpSocket": {"port": 8443}, "initialDelaySeconds": 0, "flapDamping": false, "periodSeconds": 10, "timeoutSeconds": 1,
               "failureThreshold": 3, "successThreshold": 1})
    );
    assert!(has(&i.left_out, "(WorkloadEntry two/b): not imported"));
}

#[test]
fn errors_name_object_and_field() {
    let se = |spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s}}\nspec:\n{spec}\n"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (se("  hosts: a.example"), "(ServiceEntry default/s): spec.hosts: spec.hosts must be a list"),
        (se("  hosts: [a.example]\n  endpoints: [{address: 192.0.2.1, weight: -1}]"), "spec.endpoints[0].weight: spec.endpoints[0].weight must be a non-negative integer, got -1"),
        (se("  hosts: [a.example]\n  endpoints: [{address: 192.0.2.1, weight: 10001}]"), "spec.endpoints[0].weight: weight 10001 is above 10000"),
        (se("  hosts: [a.example]\n  endpoints: [{address: 192.0.2.1, locality: a/b/c/d}]"), "spec.endpoints[0].locality: locality \"a/b/c/d\" has more than 3 parts"),
        (se("  hosts: [a.example]\n  endpoints: [{address: unix:///var/run/s.sock}]"), "is a Unix socket"),
        (se("  hosts: [a.example]\n  endpoints: [{address: \"not an address\"}]"), "neither an IP address nor a host name"),
        (se("  hosts: [a.example]"), "spec.endpoints: the entry has neither endpoints nor a workloadSelector"),
        (se("  hosts: [a.example]\n  resolution: DNS"), "with resolution DNS and no endpoints"),
        (se("  hosts: [a.example]\n  workloadSelector: {labels: {app: x}}"), "spec.workloadSelector: the workloadSelector {app=x} selects no WorkloadEntry in namespace \"default\""),
        (se("  hosts: [a.example]\n  workloadSelector: {labels: {app: x}}\n  endpoints: [{address: 192.0.2.1}]"), "exclude each other"),
        (se("  hosts: [\"bad name.example\"]\n  endpoints: [{address: 192.0.2.1}]"), "spec.hosts[0]: host \"bad name.example\" is not a valid DNS name"),
        (se("  endpoints: [{address: 192.0.2.1}]"), "spec.hosts: spec.hosts is required"),
        ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {namespace: x}\n".into(), "metadata.name is required"),
        ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {}\n".into(), "(DestinationRule default/d): spec.host: spec.host is required"),
        ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: a, trafficPolicy: {loadBalancer: {localityLbSetting: {failover: [{from: r1}]}}}}\n".into(), "localityLbSetting.failover[0].to is required"),
        ("a: [1\n".into(), "in.yaml: document 1: line 2, column 1: not valid YAML"),
        ("- just\n- a list\n".into(), "in.yaml: document 1: a document must be a Kubernetes object"),
    ];
    for (text, needle) in cases {
        let i = one(&text);
        assert!(i.services.is_empty(), "{text}");
        assert!(
            has(&i.errors, needle),
            "{needle}\n{text}\n{:#?}",
            notes(&i.errors)
        );
    }
}

#[test]
fn model_rules_are_reported_on_istio_fields() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a}
spec: {address: 192.0.2.1, labels: {app: x}, locality: r1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: g}
spec: {metadata: {labels: {app: x}}, probe: {tcpSocket: {port: 80}, failureThreshold: 30}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.gslb.example]
  workloadSelector: {labels: {app: x}}
"#;
    let i = one(text);
    assert!(
        has(
            &i.errors,
            "(WorkloadGroup default/g): spec.probe: healthCheck.failureThreshold must be between 1 and 10, got 30 (NameService field healthCheck.failureThreshold)"
        ),
        "{:#?}",
        notes(&i.errors)
    );
    let text = text.replace("failureThreshold: 30", "failureThreshold: 3").replace(
        "  workloadSelector: {labels: {app: x}}",
        "  workloadSelector: {labels: {app: x}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: s.gslb.example\n  trafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: \"r1/**\", to: {r1: 100}}]}}}",
    );
    let i = one(&text);
    assert!(
        has(
            &i.errors,
            "(DestinationRule default/d): spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0]: "
        ),
        "{:#?}",
        notes(&i.errors)
    );
}

#[test]
fn conflicts_are_errors() {
    let base = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a}
spec: {address: 192.0.2.1, labels: {app: x, tier: a}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: g1}
spec: {metadata: {labels: {app: x, tier: a}}, probe: {tcpSocket: {port: 80}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: g2}
spec: {metadata: {labels: {app: x, tier: b}}, probe: {tcpSocket: {port: 81}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s}
spec:
  hosts: [s.gslb.example]
  workloadSelector: {labels: {app: x}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: t}
spec:
  hosts: [S.gslb.example]
  endpoints: [{address: 192.0.2.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: u}
spec:
  hosts: [u.gslb.example]
  endpoints: [{address: 192.0.2.3}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d1, namespace: other}
spec: {host: "*.gslb.example"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d2, namespace: other}
spec: {host: "*.gslb.example"}
"#;
    let i = one(base);
    assert!(i.services.is_empty());
    for needle in [
        "(ServiceEntry default/s): spec.workloadSelector: the workloads it selects have different probes",
        "(ServiceEntry default/t): spec.hosts[0]: host \"s.gslb.example\" is also a host of the ServiceEntry at in.yaml: document 4",
        "(ServiceEntry default/u): spec.hosts: several DestinationRules apply to host \"u.gslb.example\"",
    ] {
        assert!(has(&i.errors, needle), "{needle}: {:#?}", notes(&i.errors));
    }
}

/// A WorkloadEntry, a ServiceEntry selecting it and a WorkloadGroup with `probe`
/// (YAML flow mapping).
fn with_probe(probe: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: a}}
spec: {{address: 192.0.2.1, labels: {{app: x}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: g}}
spec: {{metadata: {{labels: {{app: x}}}}, probe: {probe}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: s}}
spec:
  hosts: [s.gslb.example]
  workloadSelector: {{labels: {{app: x}}}}
"#
    )
}

#[test]
fn http_probes_map_field_by_field() {
    let i = one(&with_probe(
        r#"{initialDelaySeconds: 15, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2, successThreshold: 2,
            httpGet: {path: /healthz/ready, port: 15021, scheme: HTTPS,
                      httpHeaders: [{name: Host, value: foo.com}, {name: X-Probe, value: gslb},
                                    {name: User-Agent, value: kube-probe/1.29}, {name: Connection, value: close}]}}"#,
    ));
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    let ns = &services(&i)[0];
    assert_eq!(
        ns["healthCheck"],
        json!({"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTPS", "host": "foo.com",
                           "httpHeaders": [{"name": "X-Probe", "value": "gslb"}]},
               "initialDelaySeconds": 15, "flapDamping": false, "periodSeconds": 5, "timeoutSeconds": 2,
               "failureThreshold": 2, "successThreshold": 2})
    );
    // The Host header became httpGet.host; what gslb sets itself is named.
    assert_eq!(
        notes(&i.left_out),
        [
            "in.yaml: document 2 (WorkloadGroup default/g): spec.probe.httpGet.httpHeaders[2]: not mapped: gslb sends its own User-Agent, gslb/<version> (<instance>)",
            "in.yaml: document 2 (WorkloadGroup default/g): spec.probe.httpGet.httpHeaders[3]: not mapped: gslb manages the probe's connection and sends no body",
        ]
    );

    // Kubernetes' defaults: path /, scheme HTTP; a host name is the Host header.
    let i = one(&with_probe("{httpGet: {port: 8080, host: gw.example}}"));
    assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
    assert!(i.left_out.is_empty(), "{:?}", notes(&i.left_out));
    assert_eq!(
        services(&i)[0]["healthCheck"]["httpGet"],
        json!({"path": "/", "port": 8080, "scheme": "HTTP", "host": "gw.example", "httpHeaders": []})
    );

    // An address as host is where the kubelet connects: one for every workload,
    // not a per-target probe; named. With a Host header, host is named too.
    for probe in [
        "{httpGet: {port: 8080, host: 10.0.0.1}}",
        "{httpGet: {port: 8080, host: gw.example, httpHeaders: [{name: host, value: foo.com}]}}",
    ] {
        let i = one(&with_probe(probe));
        assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
        assert!(
            has(
                &i.left_out,
                "(WorkloadGroup default/g): spec.probe.httpGet.host: not mapped"
            ),
            "{probe}: {:?}",
            notes(&i.left_out)
        );
        let host = &services(&i)[0]["healthCheck"]["httpGet"]["host"];
        assert!(host.is_null() || host == "foo.com", "{probe}: {host}");
    }
}

#[test]
fn probes_gslb_cannot_run_or_map() {
    // exec and grpc: named, and no healthCheck (the targets are Unchecked).
    for (probe, field) in [
        (
            "{exec: {command: [cat, /ready]}}",
            "spec.probe.exec: not mapped",
        ),
        ("{grpc: {port: 9000}}", "spec.probe.grpc: not mapped"),
        (
            "{tcpSocket: {port: 80, host: 10.0.0.1}}",
            "spec.probe.tcpSocket.host: not mapped",
        ),
    ] {
        let i = one(&with_probe(probe));
        assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
        assert!(has(&i.left_out, field), "{field}: {:?}", notes(&i.left_out));
        let hc = &services(&i)[0]["healthCheck"];
        assert!(
            hc.is_null() || hc["tcpSocket"]["port"] == 80,
            "{probe}: {hc}"
        );
    }
    // Errors, each on its field: two handlers, a named port, values the model refuses.
    for (probe, needle) in [
        (
            "{tcpSocket: {port: 80}, httpGet: {port: 80}}",
            "(WorkloadGroup default/g): spec.probe: spec.probe takes exactly one of tcpSocket, httpGet, exec, grpc; got tcpSocket and httpGet",
        ),
        (
            "{httpGet: {port: http}}",
            "(WorkloadGroup default/g): spec.probe.httpGet.port: the named port \"http\" cannot be resolved",
        ),
        (
            "{tcpSocket: {port: -1}}",
            "spec.probe.tcpSocket.port: spec.probe.tcpSocket.port must be a port number or a port name",
        ),
        (
            "{httpGet: {port: 80, scheme: GOPHER}}",
            "(WorkloadGroup default/g): spec.probe: ",
        ),
        (
            "{httpGet: {port: 80, path: no-slash}}",
            "(NameService field healthCheck.httpGet.path)",
        ),
        (
            "{tcpSocket: {port: 80}, initialDelaySeconds: 4000}",
            "healthCheck.initialDelaySeconds must be between 0 and 3600, got 4000",
        ),
        (
            "{httpGet: {path: /}}",
            "healthCheck.httpGet.port is required",
        ),
    ] {
        // Any error: `gslb import istio` prints nothing and exits 1.
        let i = one(&with_probe(probe));
        assert!(has(&i.errors, needle), "{needle}: {:#?}", notes(&i.errors));
    }
}

#[test]
fn warmup_duration_becomes_slow_start() {
    let text = |warmup: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: s}}
spec:
  hosts: [s.gslb.example]
  endpoints: [{{address: 192.0.2.1}}, {{address: 192.0.2.2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: d}}
spec:
  host: s.gslb.example
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN, warmupDurationSecs: {warmup}}}}}
"
        )
    };
    for (warmup, secs) in [("60s", 60), ("1.5s", 2), ("2m", 120)] {
        let i = one(&text(warmup));
        assert!(i.errors.is_empty(), "{:?}", notes(&i.errors));
        assert_eq!(services(&i)[0]["slowStartSeconds"], secs, "{warmup}");
        assert!(
            !has(&i.left_out, "warmupDurationSecs"),
            "{:?}",
            notes(&i.left_out)
        );
    }
    let i = one(&text("2h"));
    assert!(
        has(
            &i.errors,
            "(DestinationRule default/d): spec.trafficPolicy.loadBalancer.warmupDurationSecs: slowStartSeconds must be between 0 and 3600, got 7200"
        ),
        "{:#?}",
        notes(&i.errors)
    );
    let i = one(&text("soon"));
    assert!(
        has(
            &i.errors,
            "spec.trafficPolicy.loadBalancer.warmupDurationSecs: spec.trafficPolicy.loadBalancer.warmupDurationSecs must be a duration"
        ),
        "{:#?}",
        notes(&i.errors)
    );
}
