# Runs an MPI job that is expected to fail: it must exit non-zero within TIMEOUT seconds (not
# hang), and its output must match EXPECT (a regex naming the failed rank and the cause).
#   cmake -DMPIEXEC=... -DNP_FLAG=-n -DNP=3 "-DMPI_FLAGS=--oversubscribe;--allow-run-as-root"
#         -DEXE=... -DTIMEOUT=20 "-DEXPECT=regex" -P expect_failure.cmake
foreach(v MPIEXEC NP_FLAG NP EXE TIMEOUT EXPECT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
string(TIMESTAMP t0 "%s")
execute_process(
  COMMAND ${MPIEXEC} ${NP_FLAG} ${NP} ${MPI_FLAGS} ${EXE} ${ARGS}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${TIMEOUT})
string(TIMESTAMP t1 "%s")
math(EXPR seconds "${t1} - ${t0}")
set(all "${out}\n${err}")
if(rc MATCHES "timeout" OR rc MATCHES "[Tt]erminated")
  message(FATAL_ERROR "the job hung: no exit within ${TIMEOUT} s (${rc})\n${all}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited 0 but one rank was made to fail\n${all}")
endif()
if(NOT all MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not match '${EXPECT}'\n${all}")
endif()
string(REGEX MATCH "gigareg: rank [0-9]+ failed: [^\n]*" line "${all}")
message(STATUS "job ended in about ${seconds} s with exit code ${rc}: ${line}")
