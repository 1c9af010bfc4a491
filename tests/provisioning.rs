//! Grafana's side: the data source provisioning example adds a data source
//! of its own and can overwrite none (Grafana's provisioner updates a data
//! source found by name or uid, and moves the default to one marked
//! isDefault), and the dashboards carry what Grafana's import asks for.

mod common;

use common::shipped::{files, repo_path};

#[test]
fn the_datasource_example_cannot_clobber_an_existing_one() {
    let text =
        std::fs::read_to_string(repo_path("dashboards/provisioning/datasource.yml")).unwrap();
    let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    // Nothing is deleted first.
    assert!(v.get("deleteDatasources").is_none(), "{text}");
    let list = v["datasources"].as_sequence().expect("datasources");
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d["type"].as_str(), Some("prometheus"));
    // A name and uid no other Grafana has by default ("Prometheus",
    // "prometheus" are what every setup guide and helm chart use).
    for key in ["name", "uid"] {
        let s = d[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {text}"));
        assert!(
            s.starts_with("badgateway"),
            "{key} {s:?} could be another's"
        );
    }
    // It does not take the default away from an existing data source.
    assert_ne!(d["isDefault"].as_bool(), Some(true), "{text}");
}

#[test]
fn dashboards_take_their_datasource_from_a_variable_set_on_import() {
    for f in files("dashboards", "json") {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = f.display();
        let inputs = d["__inputs"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no __inputs"));
        assert_eq!(inputs.len(), 1, "{name}");
        let input = &inputs[0];
        assert_eq!(input["type"], "datasource", "{name}");
        assert_eq!(input["pluginId"], "prometheus", "{name}");
        let placeholder = format!("${{{}}}", input["name"].as_str().unwrap());
        // The datasource variable starts on the chosen data source, and the
        // placeholder is nowhere else: every query goes through $datasource.
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars.iter().find(|v| v["type"] == "datasource").unwrap();
        assert_eq!(ds["current"]["value"], placeholder.as_str(), "{name}");
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(
            text.matches(&placeholder).count(),
            2,
            "{name}: only the variable's current"
        );
        // __requires names every panel plugin used.
        let required: Vec<&str> = d["__requires"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "panel")
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        let mut panels = vec![d["panels"].as_array().unwrap().clone()];
        while let Some(list) = panels.pop() {
            for p in list {
                let t = p["type"].as_str().unwrap();
                assert!(
                    t == "row" || required.contains(&t),
                    "{name}: {t} not in __requires"
                );
                if let Some(inner) = p["panels"].as_array() {
                    panels.push(inner.clone());
                }
            }
        }
    }
}
