package pipeline.connect;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.sparkproject.connect.grpc.Grpc;
import org.sparkproject.connect.grpc.Metadata;
import org.sparkproject.connect.grpc.ServerCall;
import org.sparkproject.connect.grpc.ServerCallHandler;
import org.sparkproject.connect.grpc.ServerInterceptor;
import org.sparkproject.connect.grpc.Status;

/**
 * Bearer-token authentication for the Spark 3.5 Connect server (gRPC is shaded in the
 * spark-connect jar as org.sparkproject.connect.grpc).
 *
 * <p>Loaded through {@code spark.connect.grpc.interceptor.classes}; Spark instantiates it with
 * the no-argument constructor when the server starts. The token comes from the file named by
 * the environment variable {@code PIPELINE_CONNECT_TOKEN_FILE} (or the system property
 * {@code pipeline.connect.token.file}), else from the environment variable
 * {@code PIPELINE_CONNECT_TOKEN} itself (docker-compose, whose secret files the image's user
 * could not read). Without a readable, non-empty token the constructor throws and the server
 * does not start: it never runs open by accident.
 *
 * <p>Every call must carry {@code authorization: Bearer <token>}; a missing or wrong one is
 * closed with UNAUTHENTICATED before Spark sees the request. The comparison is on SHA-256
 * digests with {@link MessageDigest#isEqual}, so its time depends neither on where the values
 * differ nor on the length of what the client sent.
 *
 * <p>With {@code PIPELINE_CONNECT_LOOPBACK_ONLY=true} (or the system property
 * {@code pipeline.connect.loopback.only=true}) calls from a non-loopback address are refused
 * with PERMISSION_DENIED as well: Spark 3.5 has no bind-address setting and listens on every
 * interface, so this is the closest it gets to a loopback-only port.
 *
 * <p>The token is never logged; refusals are logged with the peer address only.
 */
public final class TokenInterceptor implements ServerInterceptor {
    static final String TOKEN_FILE_ENV = "PIPELINE_CONNECT_TOKEN_FILE";
    static final String TOKEN_FILE_PROPERTY = "pipeline.connect.token.file";
    static final String TOKEN_ENV = "PIPELINE_CONNECT_TOKEN";
    static final String LOOPBACK_ENV = "PIPELINE_CONNECT_LOOPBACK_ONLY";
    static final String LOOPBACK_PROPERTY = "pipeline.connect.loopback.only";

    private static final Logger LOG = LoggerFactory.getLogger(TokenInterceptor.class);
    private static final Metadata.Key<String> AUTHORIZATION =
            Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private static final String BEARER = "Bearer ";

    private final byte[] expectedDigest;
    private final boolean loopbackOnly;

    public TokenInterceptor() {
        String file = setting(TOKEN_FILE_PROPERTY, TOKEN_FILE_ENV);
        String token;
        String origin;
        if (file != null && !file.isEmpty()) {
            origin = file;
            try {
                token = new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.UTF_8).trim();
            } catch (IOException e) {
                throw new IllegalStateException("cannot read the Spark Connect token file " + file + ": " + e, e);
            }
        } else {
            origin = "$" + TOKEN_ENV;
            String value = System.getenv(TOKEN_ENV);
            if (value == null) {
                throw new IllegalStateException("no Spark Connect token: set " + TOKEN_FILE_ENV + " (or -D"
                        + TOKEN_FILE_PROPERTY + ") to the file `pipeline cluster up` writes, or " + TOKEN_ENV);
            }
            token = value.trim();
        }
        if (token.isEmpty()) {
            throw new IllegalStateException("the Spark Connect token from " + origin + " is empty");
        }
        this.expectedDigest = sha256(token);
        this.loopbackOnly = "true".equalsIgnoreCase(setting(LOOPBACK_PROPERTY, LOOPBACK_ENV));
        LOG.info("Spark Connect requires a bearer token (from {}); loopback-only calls: {}", origin, loopbackOnly);
    }

    private static String setting(String property, String env) {
        String value = System.getProperty(property);
        return value != null ? value : System.getenv(env);
    }

    private static byte[] sha256(String value) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(value.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is not available", e);
        }
    }

    @Override
    public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
            ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
        SocketAddress peer = call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
        if (loopbackOnly && !isLoopback(peer)) {
            return refuse(call, Status.PERMISSION_DENIED, "calls from " + peer
                    + " are refused: this Spark Connect server accepts connections from the loopback interface only",
                    peer);
        }
        String authorization = headers.get(AUTHORIZATION);
        if (authorization == null || authorization.isEmpty()) {
            return refuse(call, Status.UNAUTHENTICATED,
                    "no bearer token: this Spark Connect server requires the header `authorization: Bearer <token>`",
                    peer);
        }
        if (!authorization.regionMatches(true, 0, BEARER, 0, BEARER.length())) {
            return refuse(call, Status.UNAUTHENTICATED,
                    "the authorization header is not a bearer token (`authorization: Bearer <token>`)", peer);
        }
        byte[] given = sha256(authorization.substring(BEARER.length()).trim());
        if (!MessageDigest.isEqual(expectedDigest, given)) {
            return refuse(call, Status.UNAUTHENTICATED, "wrong bearer token", peer);
        }
        return next.startCall(call, headers);
    }

    private static boolean isLoopback(SocketAddress peer) {
        return peer instanceof InetSocketAddress
                && ((InetSocketAddress) peer).getAddress() != null
                && ((InetSocketAddress) peer).getAddress().isLoopbackAddress();
    }

    private static <ReqT, RespT> ServerCall.Listener<ReqT> refuse(
            ServerCall<ReqT, RespT> call, Status status, String description, SocketAddress peer) {
        LOG.warn("refused {} from {}: {}", call.getMethodDescriptor().getFullMethodName(), peer, description);
        call.close(status.withDescription(description), new Metadata());
        return new ServerCall.Listener<ReqT>() {};
    }
}
