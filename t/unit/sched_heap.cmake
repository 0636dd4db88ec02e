# The scheduler's retry heap (mta/deliver/sched_heap.c).
outpost_unit_test(sched_heap_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/sched_heap_test.c
	DEPS outpost_deliver)
