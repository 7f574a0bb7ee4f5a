mod assess;
mod machine_table;
