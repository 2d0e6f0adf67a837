"""The two inference nodes of the testbed contribution: the local node (UE: preprocess, head, encode, send) and the remote node
(edge: decode, tail, result), each its own process talking TCP; plus the session protocol and the metrics record.
TensorFlow is imported only by the modules that run models."""
