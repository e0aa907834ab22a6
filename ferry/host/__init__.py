"""Host helpers at the bottom of ferry's layers: disk space, processes, sockets, locks, allocators.

They know the operating system and ferry's error types, nothing else of ferry, so every other
package may use them and none of them imports upward.
"""
