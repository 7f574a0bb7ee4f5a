mod assess;
mod assess_pods;
mod machine_table;
