"""The run log's per-iteration, per-worker and per-task fields: name -> HDF5 dtype
(documented in docs/hdf5-schema.md). Later features add fields here; readers must tolerate
missing ones."""

ITERATION_FIELDS: dict[str, str] = {
    "iteration": "i8", "t_start": "f8", "t_end": "f8", "loss": "f8", "test_loss": "f8",
    "accuracy": "f8", "train_accuracy": "f8", "coverage": "f8", "load": "f8", "stage2": "i1",
    "n_stage2": "i4", "wait_s": "f8", "decode_s": "f8", "bytes_up": "i8", "n_cancelled": "i4",
    "n_stale": "i4", "grad_norm": "f8", "comm_s": "f8",
    # the phases of a row on the wall clock (0 in virtual time): they tile t_start..t_end
    "log_s": "f8", "update_s": "f8", "eval_s": "f8",
    # clairvoyant oracle (mpicode/models/oracle.py): perfect-split seconds of the iteration
    "oracle_s": "f8", "oracle_part_s": "f8",
    # the iteration replayed without straggler delays (mpicode/engine/ideal.py): its wait
    "ideal_s": "f8",
    "rmse": "f8",  # least-squares: test RMSE (= accuracy's column for that model)
    # rank 0 as a server (docs/design.md §2.6): its time in scheme and scheduler calls
    # (measured on the wall clock, charged in virtual time) and the fraction of the row it
    # was busy
    "policy_s": "f8", "coord_busy": "f8",
    # the workers' loss and metric of the iteration's broadcast model, decoded like the
    # gradient (issue 25)
    "train_loss": "f8", "train_metric": "f8",
}
WORKER_FIELDS: dict[str, str] = {
    "stage": "i1", "partitions": "i4", "compute_s": "f8", "delay_s": "f8", "finish_s": "f8",
    "used": "i1",
    # communication phase (channel not ideal): bytes of this iteration; Q, Z and the long-run
    # participation as they stand at the iteration's end
    "offered": "i8", "admitted": "i8", "delivered": "i8", "deferred": "i8", "dropped": "i8",
    "Q": "f8", "Z": "f8", "participation": "f8",
    "active": "i1",  # 0 once the worker was left out of planning (--dead-after)
}
TASK_FIELDS: dict[str, str] = {
    "iteration": "i8", "worker": "i4", "stage": "i1", "n_partitions": "i4",
    "first_partition": "i4", "t_dispatch": "f8", "t_done": "f8", "used": "i1",
    "cancelled": "i1", "compute_s": "f8", "delay_s": "f8", "t_ready": "f8",
    "n_computed": "i4",  # partitions the message sums (fewer when a time limit cut it)
}
