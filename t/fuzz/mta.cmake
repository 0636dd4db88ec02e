# mta/addr.c (SMTP paths), mta/log.c and mta/scrub.c (escaping, address
# scrubbing).
outpost_fuzz(addr
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/addr_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/addr.c ${PROJECT_SOURCE_DIR}/mta/log.c
		${PROJECT_SOURCE_DIR}/mta/scrub.c ${PROJECT_SOURCE_DIR}/mta/logspace.c
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/addr)
