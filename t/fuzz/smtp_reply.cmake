# mta/deliver/smtp_client*.c: what any MX host may answer, read by the
# delivery client over a real loopback connection.  Registers
# fuzz/smtp_reply and asan/fuzz/smtp_reply (corpus replay) and, with
# OUTPOST_FUZZ=ON, build/fuzz/smtp_reply_fuzz:
#     build/fuzz/smtp_reply_fuzz -max_len=4096 t/fuzz/corpus/smtp_reply
outpost_fuzz(smtp_reply
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_reply_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/deliver/smtp_client.c
		${PROJECT_SOURCE_DIR}/mta/deliver/smtp_client_setup.c
	DEPS outpost_deliver
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/smtp_reply)
