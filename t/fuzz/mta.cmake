# mta/receive/addr.c (SMTP paths), mta/core/log.c and mta/core/scrub.c (escaping, address
# scrubbing).
outpost_fuzz(addr
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/addr_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/receive/addr.c ${PROJECT_SOURCE_DIR}/mta/core/log.c
		${PROJECT_SOURCE_DIR}/mta/core/scrub.c ${PROJECT_SOURCE_DIR}/mta/core/logspace.c
		${PROJECT_SOURCE_DIR}/mta/core/util.c
	DEPS outpost_queue
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/addr)
