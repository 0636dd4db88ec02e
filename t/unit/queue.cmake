# queue/: records, sealing and key files, the writer (group commit), the
# map and how LMDB writes (queue_map_test).
foreach(t queue_record_test queue_crypt_test queue_commit_test
		queue_state_test queue_archive_test queue_point_test
		queue_suppress_test queue_body_test queue_spool_test
		queue_map_test queue_txn_read_test queue_batch_test)
	outpost_unit_test(${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}.c
		${CMAKE_CURRENT_LIST_DIR}/queue_fixture.c DEPS outpost_queue)
endforeach()
# The log replay of a restore (queue/replay.c).
outpost_unit_test(queue_replay_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/queue_replay_test.c
	${CMAKE_CURRENT_LIST_DIR}/queue_fixture.c DEPS outpost_queue)
