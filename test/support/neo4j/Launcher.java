// Starts an in-process Neo4j Community server (org.neo4j.test:neo4j-harness, see pom.xml beside)
// for the tests: Bolt only, on 127.0.0.1, without TLS; no HTTP.
//
//   java -cp <classpath of pom.xml> test/support/neo4j/Launcher.java <bolt port> <working dir>
//
// (Java 11+ runs a single source file as is; test/support/neo4j.ts compiles it once instead, which
// starts faster.) With NEO4J_LAUNCHER_PASSWORD set (the environment: `ps` shows arguments), native
// authentication is on and user neo4j has that password; without it, none.
// Prints `NEO4J READY bolt://127.0.0.1:<port>` on stdout once Bolt accepts connections, then runs
// until its stdin closes (the test process stopped it, or died) or it gets SIGTERM, shuts the
// database down cleanly and deletes the working directory (Neo4j's own logs, neo4j.log and
// logs/debug.log, are in there: gone too).

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;
import org.neo4j.io.ByteUnit;
import org.neo4j.io.fs.DefaultFileSystemAbstraction;
import org.neo4j.kernel.impl.security.User;
import org.neo4j.logging.NullLogProvider;
import org.neo4j.memory.EmptyMemoryTracker;
import org.neo4j.server.security.SecureHasher;
import org.neo4j.server.security.SystemGraphCredential;
import org.neo4j.server.security.auth.FileUserRepository;

public class Launcher {
    private static final AtomicReference<Neo4j> server = new AtomicReference<>();
    private static volatile Path workDir;

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: Launcher <bolt port> <working dir>");
            System.exit(2);
        }
        // Runs on SIGTERM/SIGINT and on System.exit, also when the start fails midway.
        Runtime.getRuntime().addShutdownHook(new Thread(Launcher::shutDown, "neo4j-shutdown"));
        workDir = Path.of(args[1]).toAbsolutePath();
        try {
            start(Integer.parseInt(args[0]));
        } catch (Throwable error) {
            // Neo4j has threads of its own by now, which would keep the JVM alive.
            error.printStackTrace();
            System.exit(1);
        }

        // Blocks until stdin is closed (its parent stopped it, or died).
        byte[] buffer = new byte[256];
        try {
            while (System.in.read(buffer) >= 0) {
                // whatever is written is ignored
            }
        } catch (IOException closed) {
            // as good as the end of the stream
        }
        System.exit(0);
    }

    private static void start(int port) throws Exception {
        Files.createDirectories(workDir);
        String password = System.getenv("NEO4J_LAUNCHER_PASSWORD");
        boolean auth = password != null && !password.isEmpty();
        SocketAddress bolt = new SocketAddress("127.0.0.1", port);
        // Where Neo4j looks for the initial user (auth.ini) as it creates its system database: user
        // neo4j with our password, written as `neo4j-admin dbms set-initial-password` does (with the
        // same internal classes, which the pinned version keeps stable). Setting it with ALTER USER
        // once started instead means a first Cypher query before READY: 2-3 s more.
        Path authDir = workDir.resolve("auth");
        if (auth) {
            Files.createDirectories(authDir);
            FileUserRepository initialUsers = new FileUserRepository(
                    new DefaultFileSystemAbstraction(),
                    authDir.resolve("auth.ini"),
                    NullLogProvider.getInstance(),
                    EmptyMemoryTracker.INSTANCE);
            initialUsers.start();
            initialUsers.create(new User(
                    "neo4j",
                    null,
                    SystemGraphCredential.createCredentialForPassword(password.getBytes(StandardCharsets.UTF_8), new SecureHasher()),
                    false, // no password change required
                    false)); // not suspended
            initialUsers.shutdown();
        }

        Neo4j neo4j = Neo4jBuilders.newInProcessBuilder(workDir)
                .withDisabledServer() // no HTTP(S) connector
                .withConfig(BoltConnector.enabled, true)
                .withConfig(BoltConnector.listen_address, bolt)
                .withConfig(BoltConnector.advertised_address, bolt)
                .withConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .withConfig(GraphDatabaseSettings.auth_enabled, auth)
                .withConfig(GraphDatabaseInternalSettings.auth_store_directory, authDir)
                // Off-heap, besides the JVM's heap (-Xmx, the caller's).
                .withConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(96))
                // Nothing a short-lived test server needs, each of them work at start or disk space.
                .withConfig(GraphDatabaseSettings.udc_enabled, false)
                .withConfig(GraphDatabaseSettings.log_queries, GraphDatabaseSettings.LogQueryLevel.OFF)
                .withConfig(GraphDatabaseSettings.pagecache_warmup_enabled, false)
                .withConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .withConfig(GraphDatabaseSettings.preallocate_store_files, false)
                .withConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(16))
                .withConfig(GraphDatabaseSettings.keep_logical_logs, "keep_none")
                // Netty waits out a quiet period of 5 s per Bolt connector (there is an internal one
                // too) as it stops: 10 s to shut down, for nothing.
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(5))
                .build();
        server.set(neo4j);
        // Read once, as the system database was created.
        if (auth) deleteRecursively(authDir);

        System.out.println("NEO4J READY bolt://127.0.0.1:" + port);
        System.out.flush();

        // Neo4j's first Cypher query takes a second or more (the parser, planner and runtime load):
        // this one, while the tests' workers start, rather than a test's.
        Thread warmUp = new Thread(() -> {
            try {
                neo4j.defaultDatabaseService().executeTransactionally("MATCH (n:WarmUp {id: $id}) RETURN count(n)", Map.of("id", 0));
            } catch (RuntimeException ignored) {
                // shutting down already: nothing to warm
            }
        }, "neo4j-warm-up");
        warmUp.setDaemon(true);
        warmUp.setPriority(Thread.MIN_PRIORITY);
        warmUp.start();
    }

    private static void shutDown() {
        Neo4j neo4j = server.getAndSet(null);
        if (neo4j != null) neo4j.close();
        try {
            deleteRecursively(workDir);
        } catch (IOException | RuntimeException error) {
            System.err.println("could not delete " + workDir + ": " + error);
        }
    }

    private static void deleteRecursively(Path dir) throws IOException {
        if (!Files.exists(dir)) return;
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path path : paths.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(path);
        }
    }
}
