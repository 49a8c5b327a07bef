"""The Ray single controller: resource pools, worker groups, dispatch and collect modes."""
